"""The HTML report's forest plot: the truth's legend only where a truth is drawn."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

from abtest.html import effects_figure


class TwoTreatments:
    """A report of two treatments whose truth (as in the demo's replay) covers only the first one."""

    experiment, control, treatments, alpha, source, strategy = "exp", 0, (1, 2), 0.05, "log", "users"
    warnings: list[str] = []
    adjusted: list[Any] = []
    timeseries = None
    truth = object()

    def __init__(self) -> None:
        result = SimpleNamespace(effect=0.1, lower=0.05, upper=0.15)
        self.rows = [SimpleNamespace(metric=m, treatment=t, result=result, verdict="improvement") for t in (1, 2) for m in ("time", "sessions")]

    def arm_label(self, arm: int) -> str:
        return f"T{arm}"

    def true_effect(self, row: Any) -> float | None:
        return 0.12 if row.treatment == 1 else None


def test_the_truth_is_labelled_once_where_drawn_and_a_treatment_without_it_has_no_legend() -> None:
    # pytest turns warnings into errors: matplotlib warns when a legend finds no labelled marker.
    figure = effects_figure(TwoTreatments())  # type: ignore[arg-type]

    first, second = figure.axes
    assert [text.get_text() for text in first.get_legend().get_texts()] == ["truth"]
    assert second.get_legend() is None
    truth_markers = [line for line in first.lines if line.get_marker() == "x"]
    assert len(truth_markers) == 2 and all(math.isclose(line.get_xdata()[0], 12.0) for line in truth_markers)
