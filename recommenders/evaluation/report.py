"""The comparison table of offline evaluation: one row per ranker, one column per metric."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

FORMATS = ("table", "markdown", "csv", "json")
EVALUATION_FILE = "evaluation.json"  # beside an artifact's model.json: its latest saved offline evaluation


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

    def save(self, directory: Path, settings: dict[str, Any]) -> Path:
        """Write the table and the `settings` that produced it to `directory/EVALUATION_FILE`, replacing
        an earlier one (written under a temporary name, then renamed, so a reader never sees half a file)."""
        path = directory / EVALUATION_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"settings": settings, "rows": self.to_dicts()}, indent=2) + "\n")
        os.replace(tmp, path)
        return path


def read_saved(directory: Path) -> dict[str, Any] | None:
    """The evaluation saved beside an artifact (`Report.save`): {"settings": ..., "rows": [...]}, or None if
    there is none or it is not one (a hand-edited file is ignored rather than shown wrong)."""
    path = directory / EVALUATION_FILE
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or not isinstance(saved.get("rows"), list) or not isinstance(saved.get("settings"), dict):
        return None
    return saved
