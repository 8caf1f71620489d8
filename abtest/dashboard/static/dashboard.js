// Draws each page's charts from its JSON (embedded at load), then polls the JSON twin and redraws;
// when the numbers change, the server-rendered tables are swapped in from the page's new HTML.
"use strict";

const COLORS = { better: "#2e7d32", worse: "#c62828", neutral: "#616161" };
const PALETTE = ["#1565c0", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457", "#558b2f", "#4e342e", "#283593", "#f9a825", "#37474f"];
const PLOT_CONFIG = { responsive: true, displaylogo: false };
// Polls take the server's latest answer at once; a newer one is computed meanwhile for the next poll.
const POLL_HEADERS = { "X-Dashboard-Poll": "1" };

function layout(title, xtitle, ytitle, extra) {
  return Object.assign({
    title: { text: title, font: { size: 14 }, y: 0.98, yanchor: "top" },
    margin: { l: 60, r: 20, t: 64, b: 50 },
    xaxis: { title: { text: xtitle }, automargin: true },
    yaxis: { title: { text: ytitle }, automargin: true },
    legend: { orientation: "h", x: 0, y: 1.0, yanchor: "bottom" },
    hovermode: "closest",
  }, extra || {});
}

function zeroLine(axis) {
  const line = { type: "line", line: { color: "#000", width: 1 } };
  return axis === "x"
    ? Object.assign(line, { x0: 0, x1: 0, yref: "paper", y0: 0, y1: 1 })
    : Object.assign(line, { y0: 0, y1: 0, xref: "paper", x0: 0, x1: 1 });
}

function draw(id, traces, lay) {
  const el = document.getElementById(id);
  if (!el) return;
  if (!traces.length) {
    el.textContent = "nothing to draw yet";
    return;
  }
  Plotly.react(el, traces, lay, PLOT_CONFIG);
}

function forest(page) {
  for (const fam of page.forest || []) {
    const treatments = [...new Set(fam.rows.map((r) => r.treatment))];
    const traces = treatments.map((t) => {
      const rows = fam.rows.filter((r) => r.treatment === t);
      const label = (r) => treatments.length > 1 ? `${r.metric} · T${r.treatment}` : r.metric;
      return {
        type: "scatter", mode: "markers", name: rows[0].treatment_label,
        x: rows.map((r) => r.effect), y: rows.map(label),
        error_x: {
          type: "data", symmetric: false, thickness: 2, width: 6,
          array: rows.map((r) => r.upper === null ? null : r.upper - r.effect),
          arrayminus: rows.map((r) => r.lower === null ? null : r.effect - r.lower),
          color: "#555",
        },
        marker: { size: 11, color: rows.map((r) => COLORS[r.tone]) },
        customdata: rows.map((r) => [r.lower, r.upper, r.p_value, r.tone]),
        hovertemplate: "%{y}: %{x:+.2f}% [%{customdata[0]:+.2f}, %{customdata[1]:+.2f}], p = %{customdata[2]:.3g}, %{customdata[3]}<extra>%{fullData.name}</extra>",
      };
    });
    const height = 140 + 38 * fam.rows.length;
    draw(`forest-${fam.family}`, traces, layout(`${fam.family} metrics`, "effect, % of control", "", {
      shapes: [zeroLine("x")], height: Math.max(height, 240), yaxis: { automargin: true, autorange: "reversed" },
      showlegend: false,
    }));
  }
}

function cumulative(page) {
  const select = document.getElementById("cumulative-metric");
  if (!select) return;
  const metric = select.value;
  const traces = [];
  page.treatments.forEach((t, i) => {
    const pts = page.cumulative.filter((p) => p.metric === metric && p.treatment === t);
    const color = PALETTE[(i + 1) % PALETTE.length];
    const label = (page.arms.find((a) => a.index === t) || { label: `T${t}` }).label;
    const days = pts.map((p) => p.day);
    traces.push({ type: "scatter", mode: "lines", x: days, y: pts.map((p) => p.upper), line: { width: 0 }, showlegend: false, hoverinfo: "skip", name: `${label} upper` });
    traces.push({ type: "scatter", mode: "lines", x: days, y: pts.map((p) => p.lower), line: { width: 0 }, fill: "tonexty", fillcolor: color + "33", showlegend: false, hoverinfo: "skip", name: `${label} lower` });
    traces.push({ type: "scatter", mode: "lines+markers", x: days, y: pts.map((p) => p.effect), line: { color }, name: label,
      hovertemplate: "day %{x}: %{y:+.2f}%<extra>%{fullData.name}</extra>" });
    // The always-valid band (confidence sequence): dashed, valid at every day looked at.
    const dashed = { color, width: 1.5, dash: "dash" };
    traces.push({ type: "scatter", mode: "lines", x: days, y: pts.map((p) => p.always_lower), line: dashed, name: `${label} always-valid lower`,
      showlegend: false, hovertemplate: "day %{x}: always-valid lower %{y:+.2f}%<extra>%{fullData.name}</extra>" });
    traces.push({ type: "scatter", mode: "lines", x: days, y: pts.map((p) => p.always_upper), line: dashed, name: `${label} always-valid upper`,
      showlegend: false, hovertemplate: "day %{x}: always-valid upper %{y:+.2f}%<extra>%{fullData.name}</extra>" });
  });
  draw("cumulative", traces, layout(`${metric}: cumulative effect`, "simulated day", "effect, % of control", {
    shapes: [zeroLine("y")], xaxis: { title: { text: "simulated day" }, dtick: 1 },
  }));
}

function byArm(rows, key, value) {
  const groups = new Map();
  for (const r of rows) {
    if (!groups.has(r[key])) groups.set(r[key], []);
    groups.get(r[key]).push(r);
  }
  return [...groups.entries()].map(([name, part], i) => ({ name, part, color: PALETTE[i % PALETTE.length] }));
}

function sessions(page) {
  const rows = page.sessions.rows;
  draw("sessions", byArm(rows, "label").map(({ name, part, color }) => ({
    type: "scatter", mode: "lines+markers", name, line: { color }, x: part.map((r) => r.bin), y: part.map((r) => r.sessions),
  })), layout("sessions started", "", "sessions per bin"));
  draw("session-time", byArm(rows, "label").map(({ name, part, color }) => ({
    type: "scatter", mode: "lines+markers", name, line: { color }, x: part.map((r) => r.bin), y: part.map((r) => r.mean_time_per_session),
  })), layout("mean time per session", "", "tracks listened"));
}

function latency(page) {
  const traces = [];
  for (const { name, part, color } of byArm(page.latency.rows, "recommender")) {
    traces.push({ type: "scatter", mode: "lines+markers", name: `${name} p50`, line: { color }, x: part.map((r) => r.bin), y: part.map((r) => r.p50_ms) });
    traces.push({ type: "scatter", mode: "lines+markers", name: `${name} p99`, line: { color, dash: "dash" }, x: part.map((r) => r.bin), y: part.map((r) => r.p99_ms) });
  }
  draw("latency", traces, layout("request latency", "", "ms", { yaxis: { title: { text: "ms (log scale)" }, type: "log", automargin: true } }));
}

function render(page) {
  if (page.forest !== undefined) {
    forest(page);
    cumulative(page);
    sessions(page);
    latency(page);
  }
  for (const renderer of window.dashboardRenderers || []) renderer(page);  // pages of plugins
}

window.dashboardCharts = { draw, layout, zeroLine, PALETTE };

async function swapTables(url) {
  const response = await fetch(url, { cache: "no-store", headers: POLL_HEADERS });
  if (!response.ok) return;
  const doc = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const el of document.querySelectorAll("[data-live]")) {
    const fresh = doc.querySelector(`[data-live="${el.dataset.live}"]`);
    if (fresh) el.innerHTML = fresh.innerHTML;
  }
}

function start() {
  const main = document.getElementById("main");
  const holder = document.getElementById("page-data");
  let text = holder ? holder.textContent : "{}";
  let page = JSON.parse(text);
  window.dashboard = { page, polls: 0 };
  render(page);
  const select = document.getElementById("cumulative-metric");
  if (select) select.addEventListener("change", () => cumulative(window.dashboard.page));
  const url = main.dataset.json;
  const period = Number(main.dataset.poll) * 1000;
  if (!url || !period) return;
  const live = document.getElementById("live");
  setInterval(async () => {
    try {
      const response = await fetch(url, { cache: "no-store", headers: POLL_HEADERS });
      if (!response.ok) { live.classList.add("stale"); return; }
      const fresh = await response.text();
      live.classList.remove("stale");
      window.dashboard.polls += 1;
      if (fresh === text) return;
      text = fresh;
      page = JSON.parse(fresh);
      window.dashboard.page = page;
      render(page);
      await swapTables(window.location.href);
    } catch (error) {
      live.classList.add("stale");
    }
  }, period);
}

document.addEventListener("DOMContentLoaded", start);
