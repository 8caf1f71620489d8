"""The HTML form of a report: one self-contained page with the table and inline SVG plots.

Tables: the report's rows (with the true effect and whether the interval covers it, when the
report has a truth file) and the CUPED/CUPAC rows when it has any. Plots: each metric's relative
effect with its interval (a forest plot, one panel per treatment; the truth as a cross), and session metrics over time per arm (sessions started, mean time and mean tracks
per session), drawn with matplotlib's object API (no global pyplot state).
"""

from __future__ import annotations

import html
import io
import math
from typing import Any, Protocol


class Report(Protocol):
    """What the page reads of a report (`abtest.report.Report` has it); named here so that this
    module imports nothing of the report's and the report can import it without a circle."""

    experiment: str
    control: int
    treatments: tuple[int, ...]
    alpha: float
    rows: list[Any]
    warnings: list[str]
    timeseries: Any
    source: str
    strategy: str
    adjusted: list[Any]
    truth: Any

    def arm_label(self, arm: int) -> str: ...

    def header(self) -> list[str]: ...

    def true_effect(self, row: Any) -> float | None: ...

    def _cells(self) -> tuple[list[str], list[list[str]]]: ...

    def _adjusted_cells(self) -> tuple[list[str], list[list[str]]]: ...

MIN_SESSIONS_PER_POINT = 20  # bins with fewer sessions in an arm are too noisy to plot their means

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: 0.3em 0.7em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.improvement td { background: #eef7ee; }
tr.regression td { background: #fbe9e9; color: #b00020; }
.warning { background: #b00020; color: white; padding: 1em; font-weight: bold; margin: 1em 0; }
.meta { color: #555; }
"""


def _svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def effects_figure(report: Report):
    """Forest plot: every metric's relative effect (%) with its interval, one panel per treatment."""
    from matplotlib.figure import Figure

    metrics = list(dict.fromkeys(row.metric for row in report.rows))
    fig = Figure(figsize=(6.5 * len(report.treatments), 0.6 * len(metrics) + 1.5))
    axes = fig.subplots(1, len(report.treatments), squeeze=False)[0]
    for ax, treatment in zip(axes, report.treatments, strict=True):
        rows = [row for row in report.rows if row.treatment == treatment]
        truth_drawn = False
        for y, row in enumerate(rows):
            r = row.result
            color = {"improvement": "#2e7d32", "regression": "#c62828"}.get(row.verdict, "#555555")
            lo = r.lower if math.isfinite(r.lower) else math.nan
            hi = r.upper if math.isfinite(r.upper) else math.nan
            ax.plot([100 * lo, 100 * hi], [y, y], color=color, linewidth=2)
            ax.plot([100 * r.effect], [y], "o", color=color)
            truth = report.true_effect(row) if report.truth is not None else None
            if truth is not None:
                ax.plot([100 * truth], [y], "x", color="black", markersize=8, label=None if truth_drawn else "truth")
                truth_drawn = True
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(rows)), [row.metric for row in rows])
        ax.invert_yaxis()
        ax.set_xlabel(f"effect, % of control ({100 * (1 - report.alpha):g}% interval)")
        ax.set_title(f"{report.arm_label(treatment)} vs {report.arm_label(report.control)}")
        ax.grid(axis="x", alpha=0.3)
        if truth_drawn:  # the truth may cover none of this treatment's metrics
            ax.legend(loc="best")
    fig.tight_layout()
    return fig


def timeseries_figure(report: Report):
    """Sessions started, mean time and mean tracks per session per time bin, one line per arm."""
    from matplotlib.figure import Figure

    frame = report.timeseries
    panels = [
        ("sessions", "sessions started"),
        ("mean_time_per_session", "mean time per session"),
        ("mean_tracks_per_session", "mean tracks per session"),
    ]
    fig = Figure(figsize=(10, 8))
    axes = fig.subplots(len(panels), 1, sharex=True)
    arms = [report.control, *report.treatments]
    for ax, (column, title) in zip(axes, panels, strict=True):
        for arm in arms:
            part = frame[frame["arm"] == arm]
            if column != "sessions":
                part = part[part["sessions"] >= MIN_SESSIONS_PER_POINT]
            ax.plot(part["bin"], part[column], marker=".", label=report.arm_label(arm))
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best")
    axes[0].set_title(
        f"per {frame.attrs.get('bin_seconds', 0) / 3600:g} h of (simulated) time, by session start "
        f"(means shown where an arm has >= {MIN_SESSIONS_PER_POINT} sessions)"
    )
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def render_html(report: Report) -> str:
    """The whole report as one HTML page with inline SVG plots."""
    head, body = report._cells()
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>A/B report: {esc(report.experiment)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>A/B report: {esc(report.experiment)}</h1>",
    ]
    parts += [f'<div class="warning">{esc(w)}</div>' for w in report.warnings]
    parts += [f'<p class="meta">{esc(line)}</p>' for line in report.header()]
    parts.append("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>")
    for row, cells in zip(report.rows, body, strict=True):
        css = f' class="{row.verdict}"' if row.verdict else ""
        parts.append(f"<tr{css}>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    parts.append("</tbody></table>")
    if report.adjusted:
        head, body = report._adjusted_cells()
        parts.append("<h2>Variance reduction with pre-period covariates</h2>")
        parts.append('<p class="meta">CUPED / CUPAC re-estimates; the table above keeps the unadjusted estimates.</p>')
        parts.append("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>")
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>" for cells in body]
        parts.append("</tbody></table>")
    parts.append("<h2>Effects</h2>")
    parts.append(_svg(effects_figure(report)))
    if report.timeseries is not None and len(report.timeseries):
        parts.append("<h2>Sessions over time</h2>")
        parts.append(_svg(timeseries_figure(report)))
    parts.append(
        f'<p class="meta">log: {esc(report.source)}; sessions grouped by: {esc(report.strategy)}</p></body></html>'
    )
    return "\n".join(parts) + "\n"
