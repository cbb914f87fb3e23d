// aeogate console: live regions over server-sent events, officer actions over fetch,
// an audible cue and a screen-reader announcement when a truck is sent to inspection, and
// the officer's keyboard shortcuts (docs/user-guide.md). No dependencies.
"use strict";

(function () {
  const csrf = () => {
    const m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.content : "";
  };

  // --- audible cue (WebAudio, generated: two short tones) ---------------------------
  let audio = null;
  function beep() {
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      const t0 = audio.currentTime;
      [0, 0.25].forEach((dt, i) => {
        const osc = audio.createOscillator();
        const gain = audio.createGain();
        osc.type = "square";
        osc.frequency.value = i === 0 ? 880 : 660;
        gain.gain.setValueAtTime(0.2, t0 + dt);
        gain.gain.exponentialRampToValueAtTime(0.001, t0 + dt + 0.2);
        osc.connect(gain).connect(audio.destination);
        osc.start(t0 + dt);
        osc.stop(t0 + dt + 0.22);
      });
      document.body.dataset.beeps = String(Number(document.body.dataset.beeps || 0) + 1);
    } catch (e) {
      /* no audio device: the red panel remains the cue */
    }
  }

  // The INSPECT alert for screen readers: the text is put into an empty role="alert"
  // region, so it is read out once, whatever the officer is doing.
  function announce(text) {
    const region = document.getElementById("announce");
    if (!region || !text) return;
    region.textContent = "";
    window.setTimeout(() => {
      region.textContent = text;
      region.dataset.count = String(Number(region.dataset.count || 0) + 1);
    }, 50);
  }

  let lastInspect = null;
  function afterUpdate(live) {
    const panel = live.querySelector("#lane-live");
    if (!panel) return;
    if (panel.dataset.decision === "INSPECT" && panel.dataset.tx && panel.dataset.tx !== lastInspect) {
      if (lastInspect !== null || live.dataset.primed === "1") {
        beep();
        announce(panel.dataset.announce);
      }
      lastInspect = panel.dataset.tx;
    }
    live.dataset.primed = "1";
  }

  // --- live region ------------------------------------------------------------------
  function connect(live) {
    const status = document.getElementById("live-status");
    const es = new EventSource(live.dataset.feed);
    es.addEventListener("panel", (e) => {
      live.innerHTML = e.data;
      live.dataset.updates = String(Number(live.dataset.updates || 0) + 1);
      if (status) status.hidden = true;
      afterUpdate(live);
    });
    es.onerror = () => {
      if (status) status.hidden = false;
    };
    es.onopen = () => {
      if (status) status.hidden = true;
    };
  }

  // --- officer actions --------------------------------------------------------------
  function body(form, action, tx) {
    const f = new FormData(form);
    const b = { action: action };
    if (tx) b.transaction_id = tx;
    if (action === "OVERRIDE") {
      b.to = f.get("to");
      b.reason = f.get("reason") || "";
      b.note = f.get("note") || "";
    } else if (action === "INSPECTION_RESULT") {
      const r = f.get("result");
      b.result = r === "SEAL_REPLACED" ? { outcome: r, new_seal: (f.get("new_seal") || "").trim().toUpperCase() } : { outcome: r };
      b.note = f.get("note") || "";
    } else if (action === "LANE_CONTROL") {
      return { reason: (f.get("reason") || "").trim() };
    } else if (action === "MANUAL_ENTRY") {
      b.value = { kind: f.get("kind"), number: (f.get("number") || "").trim().toUpperCase() };
    }
    return b;
  }

  async function submit(ev) {
    ev.preventDefault();
    const form = ev.target;
    const actions = document.getElementById("actions");
    const panel = document.getElementById("lane-live");
    const msg = document.getElementById("msg");
    const action = form.dataset.action;
    const tx = panel && panel.dataset.tx ? panel.dataset.tx : null;
    const lane = actions.dataset.lane;
    // A lane close or reopen goes to its own endpoint, named by the button pressed.
    const op = action === "LANE_CONTROL" ? (ev.submitter && ev.submitter.value) || "close" : null;
    const path = op ? "/" + op : "/actions";
    msg.className = "";
    try {
      const r = await fetch("/api/v1/lanes/" + encodeURIComponent(lane) + path, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
        body: JSON.stringify(body(form, action, action === "MANUAL_ENTRY" ? null : tx)),
      });
      const j = await r.json().catch(() => ({}));
      if (r.ok) {
        msg.textContent = "✔ " + (op ? op.toUpperCase() : action) + " #" + j.seq;
        msg.className = "ok";
        form.reset();
      } else {
        msg.textContent = "✖ " + (j.error || r.status);
        msg.className = "error";
      }
    } catch (e) {
      msg.textContent = "✖ " + e;
      msg.className = "error";
    }
  }

  // --- keyboard shortcuts (officer console; not while typing in a field) ---------------
  function openForm(id, field) {
    const form = document.getElementById(id);
    if (!form) return;
    const details = form.closest("details");
    if (details) details.open = true;
    const el = form.querySelector(field);
    if (el) el.focus();
  }
  // The keys that open an action form, with the form and the field that takes the focus.
  const FORM_KEYS = new Map([
    ["o", ["f-override", 'select[name="to"]']],
    ["i", ["f-inspection", 'select[name="result"]']],
    ["m", ["f-manual", 'select[name="kind"]']],
    ["l", ["f-lane", 'input[name="reason"]']],
  ]);
  function shortcut(ev) {
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const t = ev.target;
    const typing = t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA" || t.isContentEditable);
    if (ev.key === "Escape") {
      // Closes the action form being worked in and returns to the form's summary.
      const details = t && t.closest ? t.closest("#actions details") : null;
      if (details) {
        details.open = false;
        details.querySelector("summary").focus();
        ev.preventDefault();
      }
      return;
    }
    if (typing) return;
    const k = ev.key.toLowerCase();
    if (/^[1-9]$/.test(k)) {
      const lane = document.querySelectorAll("nav.lanes a")[Number(k) - 1];
      if (lane) {
        ev.preventDefault();
        window.location.href = lane.href;
      }
    } else if (k === "c") {
      const b = document.querySelector("#f-confirm button");
      if (b) { ev.preventDefault(); b.focus(); }
    } else if (FORM_KEYS.has(k)) {
      ev.preventDefault();
      openForm(...FORM_KEYS.get(k));
    } else if (k === "h") {
      const h = document.querySelector('header.top a[href="/console/history"]');
      if (h) { ev.preventDefault(); window.location.href = h.href; }
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (document.getElementById("actions")) document.addEventListener("keydown", shortcut);
    const live = document.getElementById("live");
    if (live && live.dataset.feed) {
      afterUpdate(live);
      connect(live);
    }
    document.querySelectorAll("#actions form").forEach((f) => f.addEventListener("submit", submit));
  });
})();
