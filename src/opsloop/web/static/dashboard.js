// opsloop dashboards: draw tiles from /api/dashboards/NAME/tiles/ID, redraw the ones the server pushes.
// Text from events and sources is only ever put into the page with textContent, and escaped before it is
// handed to plotly (whose labels understand a few HTML tags).
(function () {
  "use strict";
  const script = document.currentScript;
  const board = script.dataset.board;
  const form = document.getElementById("filters");
  const live = document.getElementById("live");
  const refreshedAt = {};

  function esc(text) {
    return String(text == null ? "" : text)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function params() {
    const out = new URLSearchParams();
    const data = new FormData(form);
    for (const [k, v] of data.entries()) {
      if (k === "since" && v) out.append("since", v);
      else if (k.startsWith("dim:") && String(v).trim()) out.append("where", k.slice(4) + "=" + String(v).trim());
    }
    return out;
  }

  function fmt(value, format) {
    if (value === null || value === undefined) return "–";
    if (format === "percent") return (value * 100).toFixed(1) + "%";
    if (format === "currency") return value.toLocaleString(undefined, { maximumFractionDigits: 2 });
    if (format === "days") return value.toLocaleString(undefined, { maximumFractionDigits: 1 }) + " d";
    return value.toLocaleString(undefined, { maximumFractionDigits: 2 });
  }

  function ago(ts) {
    const s = Math.max(0, Math.round(Date.now() / 1000 - ts));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    return Math.round(s / 3600) + " h ago";
  }

  function drawKpi(body, d) {
    body.replaceChildren();
    body.appendChild(el("div", { class: "kpi-value", "data-value": String(d.value) }, fmt(d.value, d.format)));
    // a comparison only where there is something to compare with: no "vs –" for a period with no value
    if (d.change !== undefined && d.previous !== null && d.previous !== undefined && d.value !== null) {
      const pct = d.change === null ? "–" : (d.change >= 0 ? "▲ " : "▼ ") + Math.abs(d.change * 100).toFixed(1) + "%";
      const cls = d.change === null ? "kpi-change" : "kpi-change " + (d.change >= 0 ? "up" : "down");
      body.appendChild(el("span", { class: cls }, pct));
      body.appendChild(el("span", { class: "kpi-prev" }, " vs " + fmt(d.previous, d.format) + " the previous " + d.period));
    }
  }

  function drawTimeseries(body, d) {
    let chart = body.querySelector(".chart");
    if (!chart) {
      body.replaceChildren();
      chart = el("div", { class: "chart" });
      body.appendChild(chart);
    }
    const traces = d.series.map(function (s) {
      const t = { x: s.x, y: s.y, name: esc(s.name), hovertemplate: "%{x}: %{y}<extra>" + esc(s.name) + "</extra>" };
      if (d.chart === "bar") t.type = "bar";
      else { t.type = "scatter"; t.mode = "lines"; if (d.chart === "area") t.fill = "tozeroy"; }
      return t;
    });
    const layout = { margin: { l: 40, r: 10, t: 10, b: 30 }, showlegend: traces.length > 1,
                     legend: { orientation: "h" }, xaxis: { type: "date" }, hovermode: "closest" };
    const notes = d.markers || [];
    if (notes.length) {
      // business events as annotations at the time they happened: a dotted line across the chart and a
      // marker on the time axis (its label on hover), one per event, on an overlay axis of its own
      const when = (m) => m.at.replace("T", " ").slice(0, 16);
      traces.push({
        type: "scatter", mode: "markers", name: "Highlights", x: notes.map((m) => m.x), y: notes.map(() => 0),
        yaxis: "y2", cliponaxis: false, hoverinfo: "text",
        hovertext: notes.map((m) => esc(m.label + (m.subject ? ": " + m.subject : "") + " (" + when(m) + ")")),
        marker: { size: 11, symbol: "triangle-up", color: notes.map((m) => m.color || "#185a9d"),
                  line: { width: 1, color: "#fff" } },
        meta: notes.map((m) => m.highlight),
      });
      layout.yaxis2 = { overlaying: "y", range: [0, 1], visible: false, fixedrange: true };
      layout.shapes = notes.map((m) => ({ type: "line", xref: "x", yref: "paper", x0: m.x, x1: m.x, y0: 0, y1: 1,
                                          layer: "below", line: { color: m.color || "#185a9d", width: 1, dash: "dot" } }));
      layout.showlegend = traces.length > 1;
    }
    Plotly.react(chart, traces, layout, { displayModeBar: false, responsive: true });
  }

  function drawTable(body, d) {
    const table = el("table");
    const head = el("tr");
    d.columns.forEach((c) => head.appendChild(el("th", {}, c)));
    table.appendChild(head);
    d.rows.forEach(function (row) {
      const tr = el("tr");
      row.forEach(function (v, i) {
        const col = d.columns[i];
        let text = v;
        if (col === "percentile" && v !== null) text = Math.round(v * 100) + "th";
        else if (col === "value") text = fmt(v, d.format);
        tr.appendChild(el("td", {}, text === null ? "" : text));
      });
      table.appendChild(tr);
    });
    body.replaceChildren(table);
  }

  function drawFunnel(body, d) {
    let chart = body.querySelector(".chart");
    if (!chart) { body.replaceChildren(); chart = el("div", { class: "chart" }); body.appendChild(chart); }
    Plotly.react(chart, [{ type: "funnel", y: d.steps.map((s) => esc(s.label)), x: d.steps.map((s) => s.value || 0),
                          textinfo: "value+percent initial" }],
                 { margin: { l: 140, r: 10, t: 10, b: 20 } }, { displayModeBar: false, responsive: true });
  }

  function drawCohort(body, d) {
    const unit = d.grain === "month" ? "Month" : d.grain === "day" ? "Day" : "Week";
    const table = el("table", { class: "cohort" });
    const head = el("tr");
    head.appendChild(el("th", {}, "Cohort"));
    head.appendChild(el("th", {}, "Size"));
    d.periods.forEach((p) => head.appendChild(el("th", {}, unit + " " + p)));
    table.appendChild(head);
    d.rows.forEach(function (r) {
      const tr = el("tr", { "data-cohort": r.cohort });
      tr.appendChild(el("th", {}, r.cohort));
      tr.appendChild(el("td", {}, r.size));
      r.cells.forEach(function (c, k) {
        if (c === null) { tr.appendChild(el("td", { class: "cell empty", "data-period": String(k) }, "")); return; }
        const td = el("td", { class: "cell", "data-period": String(k), "data-count": String(c.count),
                              title: c.count + " of " + r.size }, Math.round(c.rate * 100) + "%");
        td.style.background = "rgba(24, 90, 157, " + (0.08 + 0.8 * c.rate).toFixed(2) + ")";
        if (c.rate > 0.5) td.style.color = "#fff";
        tr.appendChild(td);
      });
      table.appendChild(tr);
    });
    body.replaceChildren(table);
  }

  const drawers = { kpi: drawKpi, timeseries: drawTimeseries, table: drawTable, funnel: drawFunnel, cohort: drawCohort };

  function draw(id, d) {
    const tile = document.getElementById("tile-" + id);
    const body = document.getElementById("tile-" + id + "-body");
    if (d.error) {
      body.replaceChildren(el("p", { class: "error" }, d.error));
    } else {
      drawers[d.type](body, d);
    }
    refreshedAt[id] = d.refreshed_at;
    tile.dataset.refreshedAt = String(d.refreshed_at);
    tile.dataset.version = String((Number(tile.dataset.version) || 0) + 1);
    stamp(id);
  }

  function stamp(id) {
    const tile = document.getElementById("tile-" + id);
    const time = tile.querySelector(".refreshed time");
    const ts = refreshedAt[id];
    if (!ts) return;
    time.textContent = new Date(ts * 1000).toLocaleTimeString() + " (" + ago(ts) + ")";
    time.setAttribute("datetime", new Date(ts * 1000).toISOString());
    time.dataset.ts = String(ts);
    time.classList.add("exact");  // opsloop.js keeps this text (clock time and age) and sets the tooltip
    time.title = new Date(ts * 1000).toLocaleString();
  }

  const pending = {};
  async function load(id) {
    if (pending[id]) { pending[id] = "again"; return; }
    pending[id] = true;
    try {
      const res = await fetch("/api/dashboards/" + encodeURIComponent(board) + "/tiles/" + id + "?" + params(),
                              { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (res.status === 401) { window.location = "/login?next=" + encodeURIComponent(location.pathname); return; }
      draw(id, await res.json());
    } catch (err) {
      document.getElementById("tile-" + id + "-body").replaceChildren(el("p", { class: "error" }, String(err)));
    } finally {
      const again = pending[id] === "again";
      pending[id] = false;
      if (again) load(id);
    }
  }

  function loadAll() {
    document.querySelectorAll("section.tile").forEach((t) => load(Number(t.dataset.id)));
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    history.replaceState(null, "", location.pathname + "?" + params());
    loadAll();
  });
  form.querySelector("select[name=since]").addEventListener("change", () => form.requestSubmit());

  document.getElementById("refresh-now").addEventListener("click", function (ev) {
    fetch("/api/dashboards/" + encodeURIComponent(board) + "/refresh", {
      method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": ev.target.dataset.csrf },
    });
  });

  function connect() {
    const source = new EventSource("/api/dashboards/" + encodeURIComponent(board) + "/events");
    let hellos = 0;
    source.addEventListener("hello", function () {
      live.textContent = "live"; live.className = "live on";
      if (hellos++ > 0) loadAll();  // reconnected: pushes may have been missed
    });
    source.addEventListener("refresh", function (ev) {
      const msg = JSON.parse(ev.data);
      live.title = "last push: " + msg.reason;
      msg.tiles.forEach(load);
    });
    source.onerror = function () { live.textContent = "reconnecting…"; live.className = "live off"; };
  }

  setInterval(() => Object.keys(refreshedAt).forEach(stamp), 1000);
  loadAll();
  connect();
})();
