// Charts of the recommender and track pages, drawn by the dashboard's renderer loop from the page's JSON.
"use strict";

const TAG_BARS = 40; // tags shown, highest probability first

function trainingCurves(page) {
  const { draw, layout, PALETTE } = window.dashboardCharts;
  for (const artifact of page.artifacts || []) {
    if (!artifact.history || !artifact.history.length) continue;
    const keys = Object.keys(artifact.history[0]).filter((k) => k !== "epoch" && k !== "seconds" && k !== "lr"
      && typeof artifact.history[0][k] === "number");
    const traces = keys.map((key, i) => ({
      type: "scatter", mode: "lines+markers", name: key, line: { color: PALETTE[i % PALETTE.length] },
      x: artifact.history.map((row) => row.epoch), y: artifact.history.map((row) => row[key]),
      yaxis: key.includes("loss") ? "y" : "y2",
    }));
    draw(`history-${artifact.name}`, traces, layout(`${artifact.name}: training curve`, "epoch", "loss", {
      yaxis2: { overlaying: "y", side: "right", title: { text: "validation metric" } },
    }));
  }
}

function tagChart(page) {
  if (!page.tags) return;
  const { draw, layout } = window.dashboardCharts;
  const rows = page.tags.rows.slice(0, TAG_BARS);
  const y = rows.map((r) => r.tag);
  const traces = [
    { type: "bar", orientation: "h", name: "probability", y, x: rows.map((r) => r.probability),
      marker: { color: rows.map((r) => (r.predicted ? "#1565c0" : "#b0bec5")) },
      hovertemplate: "%{y}: %{x:.3f}<extra></extra>" },
    { type: "scatter", mode: "markers", name: "observed", y: rows.filter((r) => r.observed).map((r) => r.tag),
      x: rows.filter((r) => r.observed).map((r) => r.probability), marker: { symbol: "circle", size: 11, color: "#ef6c00" } },
  ];
  if (page.tags.world) {
    traces.push({ type: "scatter", mode: "markers", name: "true", y: rows.filter((r) => r.true).map((r) => r.tag),
      x: rows.filter((r) => r.true).map((r) => r.probability), marker: { symbol: "diamond-open", size: 15, color: "#2e7d32", line: { width: 2 } } });
  }
  const shapes = page.tags.threshold === null ? [] : [{ type: "line", x0: page.tags.threshold, x1: page.tags.threshold,
    yref: "paper", y0: 0, y1: 1, line: { color: "#c62828", dash: "dash", width: 2 } }];
  draw("tags-chart", traces, layout("tag probabilities", "probability", "", {
    shapes, height: 160 + 18 * rows.length, xaxis: { range: [0, 1], title: { text: "probability" } },
    yaxis: { autorange: "reversed", automargin: true, type: "category" },
  }));
}

window.dashboardRenderers = [trainingCurves, tagChart];
