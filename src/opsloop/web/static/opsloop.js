// Every page: <time data-ts> shows a relative time ("3 min ago") and the exact local time on hover.
// The server renders both already (in UTC); this keeps the relative text current and localises the tooltip.
(function () {
  "use strict";
  function relative(ts) {
    const delta = Date.now() / 1000 - ts;
    const s = Math.abs(delta);
    let text;
    if (s < 5) return "just now";
    if (s < 60) text = Math.floor(s) + " s";
    else if (s < 3600) text = Math.floor(s / 60) + " min";
    else if (s < 86400) text = Math.floor(s / 3600) + " h";
    else if (s < 86400 * 60) { const d = Math.floor(s / 86400); text = d + (d === 1 ? " day" : " days"); }
    else return new Date(ts * 1000).toLocaleDateString();
    return delta < 0 ? "in " + text : text + " ago";
  }
  function stamp(root) {
    (root || document).querySelectorAll("time[data-ts]").forEach(function (el) {
      const ts = parseFloat(el.dataset.ts);
      if (!isFinite(ts) || ts <= 0) return;
      el.title = new Date(ts * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
      if (!el.classList.contains("exact")) el.textContent = relative(ts);
    });
  }
  window.opsloopStamp = stamp;
  document.addEventListener("DOMContentLoaded", function () {
    stamp(document);
    setInterval(function () { stamp(document); }, 15000);
    // [data-live="/runs/<id>/live"]: the server says "changed" when a running thing moves on; show it
    const live = document.querySelector("[data-live]");
    if (live && window.EventSource) {
      const source = new EventSource(live.dataset.live);
      source.addEventListener("changed", function () { source.close(); window.location.reload(); });
    }
    // <table data-live-rows="/runs/live?...">: the server sends the rows of new runs ("rows", newest first) and
    // the new row of a run shown unfinished ("row"); they go into the table in place, without a reload
    const table = document.querySelector("table[data-live-rows]");
    if (table && window.EventSource) {
      const rows = new EventSource(table.dataset.liveRows);
      const note = document.getElementById("runs-live");
      const parse = function (html) {
        const holder = document.createElement("tbody");
        holder.innerHTML = html;
        stamp(holder);
        return Array.from(holder.children);
      };
      rows.addEventListener("rows", function (e) {
        const data = JSON.parse(e.data);
        const header = table.querySelector("tr");
        table.querySelectorAll("tr.empty").forEach(function (tr) { tr.remove(); });
        header.after.apply(header, parse(data.html).filter(function (tr) {
          return !table.querySelector('tr[data-id="' + CSS.escape(tr.dataset.id) + '"]');
        }));
        if (note) note.textContent = data.count + (data.count === 1 ? " new run" : " new runs") + " just arrived.";
      });
      rows.addEventListener("row", function (e) {
        const data = JSON.parse(e.data);
        const shown = table.querySelector('tr[data-id="' + CSS.escape(data.id) + '"]');
        const fresh = parse(data.html)[0];
        if (shown && fresh) shown.replaceWith(fresh);
      });
    }
    // <button data-confirm="..."> inside a form asks before submitting (no inline handlers under the CSP)
    document.querySelectorAll("form [data-confirm]").forEach(function (button) {
      button.addEventListener("click", function (e) {
        if (!window.confirm(button.dataset.confirm)) e.preventDefault();
      });
    });
  });
})();
