"""Mutation check of the modules that carry the product's promises, one module at a time.

Each module listed under `[tool.mutation.modules]` of pyproject.toml is mutated by mutmut (its
`[tool.mutmut]` settings) against its own tests only, in a scratch copy of the checkout under
`.mutation/<module>/`, within a time budget. A run that hits its budget stops; the next run
resumes where it stopped (mutmut keeps its results in the copy). The summary table goes to
stdout and to `.mutation/summary.md`; `--fail-under` makes it a gate. See docs/testing.md.

Usage:
    scripts/mutation.sh                                   # every module, 20 minutes each
    scripts/mutation.sh abtest/stats.py --budget 600      # one module, 10 minutes
    scripts/mutation.sh --report                          # only the table of the last runs
    scripts/mutation.sh sim/listener.py --fresh           # after changing tests: check every mutant again
    scripts/mutation.sh sim/listener.py --recheck         # after changing tests: only the mutants not yet caught
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRATCH = REPO / ".mutation"
MUTMUT = Path(sys.executable).parent / "mutmut"
# mutmut's verdicts that mean a test noticed the mutant.
DETECTED = ("killed", "timeout", "segfault", "caught by type check")


def modules() -> dict[str, list[str]]:
    """Module path -> the tests it is checked against, from pyproject.toml."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return config["tool"]["mutation"]["modules"]


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(f'"{value}"' for value in values) + "]"


def prepare(module: str, tests: list[str]) -> Path:
    """Refresh the scratch copy of the checkout for `module` and point mutmut at it and its tests."""
    copy = SCRATCH / module.replace("/", "_").removesuffix(".py")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True, capture_output=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source, target = REPO / name, copy / name
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists() or target.read_bytes() != source.read_bytes():
                shutil.copy2(source, target)
    pyproject = copy / "pyproject.toml"
    text = pyproject.read_text()
    text = re.sub(r"^only_mutate = \[.*?\]", f"only_mutate = {_toml_list([module])}", text, count=1, flags=re.M | re.S)
    text = re.sub(r"^pytest_add_cli_args_test_selection = \[.*?\]", f"pytest_add_cli_args_test_selection = {_toml_list(tests)}", text, count=1, flags=re.M | re.S)
    pyproject.write_text(text)
    return copy


def run(copy: Path, budget: float, names: list[str] | None = None) -> bool:
    """mutmut run in the copy for at most `budget` seconds (only the mutants `names`, when given);
    True when it finished."""
    try:
        done = subprocess.run(
            [str(MUTMUT), "run", "--max-children", "1", *(names or [])], cwd=copy, timeout=budget, capture_output=True, text=True
        )
    except subprocess.TimeoutExpired:
        return False
    if done.returncode != 0:  # e.g. the unmutated tests failed: mutmut checks nothing then
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        print(f"{copy.name}: mutmut run failed (exit {done.returncode}):", *tail, sep="\n  ", file=sys.stderr)
    return True


def verdicts(copy: Path) -> dict[str, str]:
    """Mutant name -> mutmut's verdict, for every mutant of the copy's last run."""
    if not (copy / "mutants").exists():
        return {}
    out = subprocess.run([str(MUTMUT), "results", "--all", "true"], cwd=copy, capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        name, sep, verdict = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            found[name] = verdict.strip()
    return found


def summary(rows: list[tuple[str, Counter, bool | None]]) -> str:
    """The markdown table of verdicts and scores per module."""
    lines = [
        "| module | mutants | killed | timeout | survived | no tests | not checked | score |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for module, counts, finished in rows:
        checked = sum(n for verdict, n in counts.items() if verdict != "not checked")
        detected = sum(counts[v] for v in DETECTED)
        score = f"{detected / checked:.1%}" if checked else "n/a"
        note = "" if finished is not False else " (budget hit)"
        lines.append(
            f"| `{module}`{note} | {sum(counts.values())} | {counts['killed']} | {counts['timeout']} | {counts['survived']} "
            f"| {counts['no tests']} | {counts['not checked']} | {score} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="module paths from [tool.mutation.modules] (default: all)")
    parser.add_argument("--budget", type=float, default=1200.0, help="seconds per module (default 1200)")
    parser.add_argument("--report", action="store_true", help="only print the table of the last runs")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results (mutmut re-checks changed code, not changed tests)")
    parser.add_argument(
        "--recheck", action="store_true", help="check again only the mutants not caught yet (survived, no tests, not checked): after writing tests for survivors"
    )
    parser.add_argument("--survivors", action="store_true", help="also list the surviving mutants")
    parser.add_argument("--fail-under", type=float, default=None, help="exit 1 when a module's score is below this percentage")
    args = parser.parse_args()
    table = modules()
    unknown = [m for m in args.modules if m not in table]
    if unknown:
        parser.error(f"{', '.join(unknown)}: not in [tool.mutation.modules] of pyproject.toml ({', '.join(table)})")
    if not MUTMUT.exists():
        parser.error(f"{MUTMUT} not found: run ./scripts/setup.sh (mutmut is in the locked dev tools)")
    rows, survivors = [], []
    for module in args.modules or list(table):
        copy = prepare(module, table[module]) if not args.report else SCRATCH / module.replace("/", "_").removesuffix(".py")
        if args.fresh and not args.report:
            shutil.rmtree(copy / "mutants", ignore_errors=True)
        uncaught = [name for name, verdict in verdicts(copy).items() if verdict not in DETECTED] if args.recheck else []
        finished = None if args.report or (args.recheck and not uncaught) else run(copy, args.budget, uncaught)
        found = verdicts(copy)
        rows.append((module, Counter(found.values()), finished))
        survivors += [name for name, verdict in found.items() if verdict in ("survived", "no tests")]
        print(f"{module}: {len(found)} mutants, {Counter(found.values())}", file=sys.stderr)
    text = summary(rows)
    SCRATCH.mkdir(exist_ok=True)
    (SCRATCH / "summary.md").write_text(text + "\n")
    print(text)
    if args.survivors and survivors:
        print("\nsurviving mutants (show one with `cd .mutation/<module> && ../../.venv/bin/mutmut show NAME`):")
        print("\n".join(f"  {name}" for name in survivors))
    if args.fail_under is not None:
        for module, counts, _ in rows:
            checked = sum(n for verdict, n in counts.items() if verdict != "not checked")
            if checked and 100 * sum(counts[v] for v in DETECTED) / checked < args.fail_under:
                print(f"{module}: mutation score below {args.fail_under}%", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
