"""The comparison table of offline evaluation: one row per ranker, one column per metric."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

FORMATS = ("table", "markdown", "csv", "json")


@dataclass
class Report:
    """Metrics per ranker, in the order they were added; renders itself."""

    rows: dict[str, dict[str, float]] = field(default_factory=dict)

    def add(self, name: str, result: dict[str, float]) -> None:
        self.rows[name] = dict(result)

    def to_dicts(self) -> list[dict[str, float | str]]:
        """One mapping per ranker: `name` plus each metric."""
        return [{"name": name, **result} for name, result in self.rows.items()]

    def to_frame(self) -> pd.DataFrame:
        """The table as a DataFrame indexed by ranker name."""
        frame = pd.DataFrame(self.to_dicts()).set_index("name")
        if "cases" in frame:
            frame["cases"] = frame["cases"].astype(int)
        return frame

    def to_string(self) -> str:
        """A plain-text table."""
        return self.to_frame().to_string(float_format=lambda value: f"{value:.4f}")

    def to_markdown(self) -> str:
        """A Markdown table (for notes and the README)."""
        frame = self.to_frame()
        header = "| name | " + " | ".join(frame.columns) + " |"
        rule = "|---|" + "---:|" * len(frame.columns)
        lines = [header, rule]
        for name, row in frame.iterrows():
            cells = [str(int(value)) if column == "cases" else f"{value:.4f}" for column, value in row.items()]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def render(self, fmt: str) -> str:
        """The report in one of `FORMATS`."""
        if fmt == "table":
            return self.to_string()
        if fmt == "markdown":
            return self.to_markdown()
        if fmt == "csv":
            return self.to_frame().to_csv()
        if fmt == "json":
            return json.dumps(self.to_dicts(), indent=2)
        raise ValueError(f"format == {fmt!r}, must be one of {', '.join(FORMATS)}")
