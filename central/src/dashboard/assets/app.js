// aeogate central dashboard: the little script the pages need.
// - the exceptions queue refreshes itself from Server-Sent Events (no reload);
// - selects marked data-autosubmit submit their form;
// - the resolve form asks for a new seal number only for SEAL_REPLACED.
// No libraries; everything is served by central itself.
'use strict';

(function () {
  function liveTable(tbody) {
    var src = tbody.getAttribute('data-live-src');
    var streamUrl = tbody.getAttribute('data-live-stream');
    if (!src || !streamUrl || !window.EventSource) return;
    var pending = null;
    var busy = false;
    function known() {
      var ids = {};
      tbody.querySelectorAll('tr[data-case]').forEach(function (tr) { ids[tr.getAttribute('data-case')] = true; });
      return ids;
    }
    function refresh() {
      pending = null;
      if (busy) { pending = setTimeout(refresh, 100); return; }
      busy = true;
      var before = known();
      fetch(src, { credentials: 'same-origin', headers: { 'Accept': 'text/html' } })
        .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.text(); })
        .then(function (html) {
          tbody.innerHTML = html;
          tbody.querySelectorAll('tr[data-case]').forEach(function (tr) {
            if (!before[tr.getAttribute('data-case')]) tr.classList.add('new');
          });
          document.body.setAttribute('data-live-updated', String(Date.now()));
        })
        .catch(function (e) { console.warn('refresh failed', e); })
        .then(function () { busy = false; });
    }
    function schedule() { if (!pending) pending = setTimeout(refresh, 50); }
    var es = new EventSource(streamUrl);
    es.addEventListener('case', schedule);
    es.addEventListener('resync', schedule);
    es.addEventListener('open', function () { document.body.setAttribute('data-live', 'on'); });
    es.addEventListener('error', function () { document.body.setAttribute('data-live', 'reconnecting'); });
  }

  function init() {
    document.querySelectorAll('tbody[data-live-src]').forEach(liveTable);
    document.querySelectorAll('select[data-autosubmit]').forEach(function (s) {
      s.addEventListener('change', function () { s.form.submit(); });
    });
    var outcome = document.getElementById('outcome');
    var seal = document.getElementById('new-seal');
    if (outcome && seal) {
      var label = seal.closest('label');
      var sync = function () {
        var need = outcome.value === 'SEAL_REPLACED';
        if (label) label.hidden = !need;
        seal.required = need;
      };
      outcome.addEventListener('change', sync);
      sync();
    }
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
