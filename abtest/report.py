"""The A/B report: results of every metric and treatment, rendering itself as a table, Markdown, CSV, JSON or HTML.

Effects and bounds are stored as fractions and shown in % of the control mean. The columns
follow the course's results table (metric, effect, upper, lower, control mean, treatment mean,
significant), then the p-value, the corrected p-value and the users per arm.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

from abtest.errors import AbtestError
from abtest.html import render_html
from abtest.metrics import MetricResult
from abtest.sessionize import Quality
from abtest.stats import SrmResult

FORMATS = ("table", "markdown", "csv", "json", "html")


@dataclass(frozen=True)
class ReportRow:
    """One metric for one treatment: the raw result and the multiple-testing corrected one beside it."""

    metric: str
    treatment: int
    result: MetricResult
    p_value_adj: float
    significant_adj: bool
    higher_is_better: bool = True

    @property
    def verdict(self) -> str:
        """'improvement' or 'regression' for a significant move (after correction) by the metric's
        direction (latency up is a regression), '' otherwise."""
        if not self.significant_adj or not math.isfinite(self.result.effect) or self.result.effect == 0:
            return ""
        return "improvement" if (self.result.effect > 0) == self.higher_is_better else "regression"


@dataclass(frozen=True)
class AdjustedRow:
    """One metric for one treatment after a variance reduction (CUPED or CUPAC), beside its unadjusted row.

    Not part of the multiple-testing correction: it re-estimates a row's effect, it is not another test.
    """

    metric: str
    treatment: int
    method: str
    result: MetricResult
    variance_reduction: float


def _pct(x: float) -> float:
    return x * 100.0


def _json_number(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


@dataclass
class Report:
    """An A/B report; render it with `to_dicts`, `to_frame` or `to_string(format)`.

    Attributes:
        source: The log it was computed from.
        experiment: Experiment name.
        control: Control treatment index.
        treatments: Treatment indices compared with the control.
        recommenders: Treatment index -> recommender, when the log declares them.
        alpha: Significance level; intervals have confidence 1 - alpha.
        relative: Relative interval method ('fieller' or 'delta').
        estimand: 'user-mean' or 'ratio-of-sums'.
        correction: Multiple-testing correction method.
        rows: One row per metric and treatment.
        users: Users per treatment index (every treatment of the experiment, for the SRM check).
        srm: Sample-ratio-mismatch check against the configured (equal) split.
        filters: The filters applied, in words.
        strategy: How events were grouped into sessions.
        warnings: Loud warnings (sample ratio mismatch, misassigned users).
        quality: Rows read and rows dropped for a NULL key or a value outside its domain (None: not counted).
        timeseries: Per-arm session metrics over time (pandas DataFrame) or None.
        truth: (metric, treatment) -> true relative effect from the potential outcomes (None where
            the truth cannot know it), or None without a truth file (`abtest.truth`).
        truth_source: The truth file read.
        adjusted: Variance-reduced re-estimates of the rows (`abtest.cuped`), shown beside them.
    """

    source: str
    experiment: str
    control: int
    treatments: tuple[int, ...]
    recommenders: dict[int, str]
    alpha: float
    relative: str
    estimand: str
    correction: str
    rows: list[ReportRow]
    users: dict[int, int]
    srm: SrmResult
    filters: str = ""
    strategy: str = ""
    warnings: list[str] = field(default_factory=list)
    timeseries: Any = None
    quality: Quality | None = None
    truth: dict[tuple[str, int], float | None] | None = None
    truth_source: str = ""
    adjusted: list[AdjustedRow] = field(default_factory=list)

    def true_effect(self, row: ReportRow | AdjustedRow) -> float | None:
        """The row's true effect (a fraction), or None when unknown."""
        return None if self.truth is None else self.truth.get((row.metric, row.treatment))

    def arm_label(self, arm: int) -> str:
        """'C' for index 0, 'T{i}' otherwise, with the recommender name when known."""
        label = "C" if arm == 0 else f"T{arm}"
        name = self.recommenders.get(arm)
        return f"{label} ({name})" if name else label

    def to_dicts(self) -> list[dict[str, Any]]:
        """One dict per metric and treatment; effect, lower and upper in % of the control mean."""
        out = []
        plain = [(row, row.p_value_adj, row.significant_adj, None) for row in self.rows]
        verdicts = {(row.metric, row.treatment): (row.higher_is_better, row.verdict) for row in self.rows}
        extra = [(row, row.result.p_value, row.result.significant, row.variance_reduction) for row in self.adjusted]
        for row, p_adj, significant_adj, reduction in plain + extra:
            r = row.result
            out.append(
                {
                    "metric": row.metric,
                    "control": self.control,
                    "treatment": row.treatment,
                    "control_mean": r.control_mean,
                    "treatment_mean": r.treatment_mean,
                    "effect": _pct(r.effect),
                    "lower": _pct(r.lower),
                    "upper": _pct(r.upper),
                    "p_value": r.p_value,
                    "significant": r.significant,
                    "p_value_adj": p_adj,
                    "significant_adj": significant_adj,
                    "control_users": r.control_users,
                    "treatment_users": r.treatment_users,
                    "diff": r.diff,
                    "diff_lower": r.diff_lower,
                    "diff_upper": r.diff_upper,
                    "method": r.method,
                    "correction": self.correction,
                    "srm_p_value": self.srm.p_value,
                    **self._quality_fields(),
                    "higher_is_better": verdicts[(row.metric, row.treatment)][0],
                    "verdict": verdicts[(row.metric, row.treatment)][1] if reduction is None else "",
                }
            )
            if self.adjusted:
                out[-1]["variance_reduction"] = None if reduction is None else _pct(reduction)
            if self.truth is not None:
                truth = self.true_effect(row)
                out[-1]["truth"] = None if truth is None else _pct(truth)
                out[-1]["covers_truth"] = None if truth is None else bool(r.lower <= truth <= r.upper)
        return out

    def _quality_fields(self) -> dict[str, Any]:
        """`dropped_rows` and the `data_quality` line, the same in every row (absent when not counted)."""
        if self.quality is None:
            return {}
        return {"dropped_rows": self.quality.total_dropped, "data_quality": self.quality.describe()}

    def to_frame(self):
        """The rows as a pandas DataFrame (columns of `to_dicts`)."""
        import pandas as pd

        return pd.DataFrame(self.to_dicts())

    def header(self) -> list[str]:
        """Lines that say what was compared, how, and the sample-ratio check."""
        arms = ", ".join(self.arm_label(t) for t in self.treatments)
        users = " / ".join(f"{self.arm_label(a)}: {n}" for a, n in sorted(self.users.items()))
        method = {
            "fieller": "Fieller interval with Welch's t (p-value: Welch's t-test)",
            "delta": "delta method, t-test on the relative effect",
        }[self.relative]
        lines = [
            f"experiment {self.experiment!r}: {arms} vs control {self.arm_label(self.control)}",
            f"users {users}",
            f"effects in % of the control mean; {100 * (1 - self.alpha):g}% intervals: {method}; "
            f"estimand {self.estimand}; {self.correction} correction over {len(self.rows)} tests",
        ]
        if self.filters:
            lines.append(f"filters: {self.filters}")
        if self.quality is not None:
            lines.append(self.quality.describe())
        if not self.srm.mismatch:
            lines.append(f"sample ratio check: ok (chi-square p = {self.srm.p_value:.3g})")
        if self.truth is not None:
            lines.append(f"truth: the effect with every listener in each arm, from the potential outcomes in {self.truth_source}")
        return lines

    def _cells(self) -> tuple[list[str], list[list[str]]]:
        several = len(self.treatments) > 1
        head = ["metric", *(["treatment"] if several else []), "effect", "upper", "lower", "control_mean",
                "treatment_mean", "significant", "p_value", f"p_{self.correction}", f"significant_{self.correction}",
                "control_users", "treatment_users", "verdict", *(["truth", "covers_truth"] if self.truth is not None else [])]
        body = []
        for row in self.rows:
            r = row.result
            body.append(
                [
                    row.metric,
                    *([self.arm_label(row.treatment)] if several else []),
                    _fmt_pct(r.effect),
                    _fmt_pct(r.upper),
                    _fmt_pct(r.lower),
                    f"{r.control_mean:.6g}",
                    f"{r.treatment_mean:.6g}",
                    str(r.significant),
                    _fmt_p(r.p_value),
                    _fmt_p(row.p_value_adj),
                    str(row.significant_adj),
                    str(r.control_users),
                    str(r.treatment_users),
                    row.verdict.upper() if row.verdict == "regression" else row.verdict,
                ]
            )
            if self.truth is not None:
                truth = self.true_effect(row)
                body[-1] += ["n/a", "n/a"] if truth is None else [_fmt_pct(truth), str(r.lower <= truth <= r.upper)]
        return head, body

    def _adjusted_cells(self) -> tuple[list[str], list[list[str]]]:
        several = len(self.treatments) > 1
        truth = self.truth is not None
        head = ["metric", *(["treatment"] if several else []), "method", "effect", "upper", "lower", "p_value",
                "variance_reduction", *(["truth", "covers_truth"] if truth else [])]
        body = []
        for row in self.adjusted:
            r = row.result
            cells = [row.metric, *([self.arm_label(row.treatment)] if several else []), row.method, _fmt_pct(r.effect),
                     _fmt_pct(r.upper), _fmt_pct(r.lower), _fmt_p(r.p_value), f"{100 * row.variance_reduction:.1f}%"]
            if truth:
                value = self.true_effect(row)
                cells += ["n/a", "n/a"] if value is None else [_fmt_pct(value), str(r.lower <= value <= r.upper)]
            body.append(cells)
        return head, body

    def to_string(self, format: str = "table") -> str:
        """The report rendered as 'table', 'markdown', 'csv', 'json' or 'html'."""
        if format == "json":
            rows = [{k: _json_number(v) for k, v in d.items()} for d in self.to_dicts()]
            return json.dumps(rows, indent=2, allow_nan=False)
        if format == "csv":
            buffer = io.StringIO()
            dicts = self.to_dicts()
            writer = csv.DictWriter(buffer, fieldnames=list(dicts[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(dicts)
            return buffer.getvalue()
        if format == "html":
            return render_html(self)
        if format not in FORMATS:
            raise AbtestError(f"format == {format!r}, must be one of {', '.join(FORMATS)}")
        head, body = self._cells()
        banner = [f"!!! {w}" for w in self.warnings]
        if format == "markdown":
            lines = [*(f"> **{w}**" for w in banner), *(f"{line}  " for line in self.header()), ""]
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "|".join(":---:" for _ in head) + "|")
            lines += ["| " + " | ".join(cells) + " |" for cells in body]
            if self.adjusted:
                head, body = self._adjusted_cells()
                lines += ["", "Variance reduction with pre-period covariates (the rows above stay the unadjusted estimates):", ""]
                lines.append("| " + " | ".join(head) + " |")
                lines.append("|" + "|".join(":---:" for _ in head) + "|")
                lines += ["| " + " | ".join(cells) + " |" for cells in body]
            return "\n".join(lines) + "\n"
        widths = [max(len(h), *(len(cells[i]) for cells in body)) for i, h in enumerate(head)]
        fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
        lines = [*banner, *self.header(), "", fmt.format(*head), fmt.format(*("-" * w for w in widths))]
        lines += [fmt.format(*cells) for cells in body]
        if self.adjusted:
            head, body = self._adjusted_cells()
            widths = [max(len(h), *(len(cells[i]) for cells in body)) for i, h in enumerate(head)]
            fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
            lines += ["", "variance reduction with pre-period covariates (rows above: unadjusted):", fmt.format(*head),
                      fmt.format(*("-" * w for w in widths))]
            lines += [fmt.format(*cells) for cells in body]
        lines += banner
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.to_string("table")


def _fmt_pct(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "+inf" if x > 0 else "-inf"
    return f"{100 * x:+.3f}%"


def _fmt_p(p: float) -> str:
    if math.isnan(p):
        return "nan"
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"
