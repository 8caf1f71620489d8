"""Write docs/reference.md, the API reference a plugin author reads, from the code's own docstrings.

Covers the public catalog (`contracts.catalog`), the recommender contract (`recommenders.base`),
the registry, the answer validator, the contract kit, the event-log `Dataset` and the session
counts, with each object's signature and docstring (`inspect`). A test fails when the committed
file differs from what this writes, so the reference never goes stale.

    python scripts/reference.py            # rewrite docs/reference.md
    python scripts/reference.py --check    # exit 1 when docs/reference.md is stale
"""

from __future__ import annotations

import importlib
import inspect
import sys
from functools import cached_property
from pathlib import Path
from typing import Any

import click

OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "reference.md"

# (module, the names documented from it, in this order)
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("contracts.catalog", ("Catalog", "CatalogError")),
    ("recommenders.base", ("Request", "RequestBatch", "Recommendation", "Recommender", "Fittable", "Trainable", "NotFittedError", "ArtifactError")),
    ("recommenders.registry", ("register", "make", "get_class", "names", "entries", "Entry", "RegistryError", "ENTRY_POINT_GROUP")),
    ("recommenders.answers", ("validate", "ask", "ask_all", "ask_columns", "Outcome", "Outcomes", "BrokenRule", "ContractError")),
    ("recommenders.testing", ("check_recommender", "ContractReport", "make_requests", "make_events", "write_catalog")),
    ("recommenders.dataset", ("Dataset",)),
    ("contracts.sessions", ("FIRST_TRACK_TIME", "logged_tracks", "logged_time")),
)

# The methods a subclass implements: private by name, but part of the contract.
HOOKS = ("_recommend", "_recommend_batch", "_fit", "_save", "_load")

HEADER = """\
# API reference: the catalog and the recommender contract

Generated from the docstrings by `python scripts/reference.py`; do not edit by hand (a test
fails when this file is stale). The walkthrough is [plugins.md](plugins.md).
"""


def _annotation(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return ""
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def signature(obj: Any, *, drop_self: bool = False) -> str:
    """`(a: int, *, b: str = 'x') -> None`, annotations as written in the source."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    parts: list[str] = []
    star_done = False
    for i, parameter in enumerate(sig.parameters.values()):
        if drop_self and i == 0 and parameter.name in ("self", "cls"):
            continue
        kind = parameter.kind
        if kind is inspect.Parameter.KEYWORD_ONLY and not star_done:
            parts.append("*")
            star_done = True
        prefix = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}.get(kind, "")
        if kind is inspect.Parameter.VAR_POSITIONAL:
            star_done = True
        text = prefix + parameter.name
        annotation = _annotation(parameter.annotation)
        if annotation:
            text += f": {annotation}"
        if parameter.default is not inspect.Parameter.empty:
            text += f" = {parameter.default!r}" if annotation else f"={parameter.default!r}"
        parts.append(text)
    returns = _annotation(sig.return_annotation)
    return f"({', '.join(parts)})" + (f" -> {returns}" if returns else "")


SECTION_TITLES = ("Args:", "Arguments:", "Attributes:", "Returns:", "Raises:", "Yields:")


def markdown(doc: str) -> str:
    """A Google-style docstring as Markdown: each `Args:`-like section becomes a bold title and a
    list of `name`: text items (continuation lines joined); doctests become code blocks."""
    out: list[str] = []
    lines = doc.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() in SECTION_TITLES:
            out += [f"**{line.strip()}**", ""]
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
                item = lines[i].strip()
                if item and lines[i].startswith("    ") and not lines[i].startswith("     "):
                    name, sep, text = item.partition(":")
                    out.append(f"- `{name}`:{text}" if sep and " " not in name.strip() else f"- {item}")
                elif item and out:
                    out[-1] += " " + item
                i += 1
            out.append("")
            continue
        if line.startswith(">>>"):
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i])
                i += 1
            out += ["```python", *block, "```"]
            continue
        out.append(line)
        i += 1
    return "\n".join(out).strip()


def _doc(obj: Any) -> str:
    doc = inspect.getdoc(obj)
    return markdown(doc.strip()) if doc else "(undocumented)"


def _members(cls: type) -> list[tuple[str, Any]]:
    """The members `cls` itself defines that a plugin author uses: public methods and properties, and the hooks."""
    found = []
    for name, value in vars(cls).items():
        if name.startswith("_") and name not in HOOKS:
            continue
        if isinstance(value, staticmethod | classmethod):
            value = value.__func__
        if inspect.isfunction(value) or isinstance(value, property | cached_property):
            found.append((name, value))
    return found


def _class(module: str, name: str, cls: type) -> list[str]:
    bases = [b.__name__ for b in cls.__bases__ if b is not object]
    heading = f"### class `{name}`" + (f" ({', '.join(bases)})" if bases else "")
    call = f"`{module}.{name}{signature(cls).removesuffix(' -> None')}`" if cls.__init__ is not object.__init__ else f"`{module}.{name}`"
    lines = [heading, "", call, "", _doc(cls), ""]
    for member, value in _members(cls):
        if isinstance(value, property | cached_property):
            function = value.fget if isinstance(value, property) else value.func
            returns = _annotation(inspect.signature(function).return_annotation) if function is not None else ""
            lines += [f"- **`{member}`**" + (f" -> `{returns}`" if returns else "") + " (property): " + _indent(_doc(value)), ""]
        else:
            hook = " (to implement)" if member in HOOKS else ""
            lines += [f"- **`{member}{signature(value, drop_self=True)}`**{hook}: " + _indent(_doc(value)), ""]
    return lines


def _indent(text: str) -> str:
    """A docstring as the body of a list item: continuation lines indented under it."""
    return "\n  ".join(line if line else "" for line in text.splitlines()).replace("\n  \n", "\n\n")


def render() -> str:
    """The whole reference, as Markdown."""
    lines = [HEADER]
    for module_name, names in SECTIONS:
        module = importlib.import_module(module_name)
        summary = (inspect.getdoc(module) or "").split("\n\n")[0].replace("\n", " ")
        lines += [f"## `{module_name}`", "", summary, ""]
        for name in names:
            obj = getattr(module, name)
            if inspect.isclass(obj):
                lines += _class(module_name, name, obj)
            elif callable(obj):
                lines += [f"### `{name}{signature(obj)}`", "", _doc(obj), ""]
            else:
                lines += [f"### `{name} = {obj!r}`", ""]
    return "\n".join(lines).rstrip() + "\n"


@click.command()
@click.option("--check", is_flag=True, help="Exit 1 when docs/reference.md differs from what would be written.")
def main(check: bool) -> None:
    """Write (or check) docs/reference.md."""
    text = render()
    if check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            raise click.ClickException(f"{OUTPUT} is stale; run `python scripts/reference.py`")
        click.echo(f"{OUTPUT} is up to date")
        return
    OUTPUT.write_text(text)
    click.echo(f"wrote {OUTPUT}")


if __name__ == "__main__":
    sys.exit(main())
