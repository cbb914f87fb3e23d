// aeogate console: live regions over server-sent events, officer actions over fetch,
// and an audible cue when a truck is sent to inspection. No dependencies.
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

  let lastInspect = null;
  function afterUpdate(live) {
    const panel = live.querySelector("#lane-live");
    if (!panel) return;
    if (panel.dataset.decision === "INSPECT" && panel.dataset.tx && panel.dataset.tx !== lastInspect) {
      if (lastInspect !== null || live.dataset.primed === "1") beep();
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
    msg.className = "";
    try {
      const r = await fetch("/api/v1/lanes/" + encodeURIComponent(lane) + "/actions", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
        body: JSON.stringify(body(form, action, action === "MANUAL_ENTRY" ? null : tx)),
      });
      const j = await r.json().catch(() => ({}));
      if (r.ok) {
        msg.textContent = "✔ " + action + " #" + j.seq;
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

  document.addEventListener("DOMContentLoaded", () => {
    const live = document.getElementById("live");
    if (live && live.dataset.feed) {
      afterUpdate(live);
      connect(live);
    }
    document.querySelectorAll("#actions form").forEach((f) => f.addEventListener("submit", submit));
  });
})();
