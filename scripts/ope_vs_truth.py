"""Off-policy estimates and interleaving scored against the truth, on a small world (docs/ope.md).

One command (`python scripts/ope_vs_truth.py`) reproduces the README's tables:

1. a small world; day 1 served by random / sticky_artist / top_pop, on which dssm, content,
   bpr_knn and tags are trained (cached in WORKDIR);
2. per seed, an in-process experiment over several days whose arms are the logging policy
   (bpr_knn exploring: epsilon 0.5 split between dssm and content) and the six
   recommenders served plainly (the A/B), with the truth: every listener replayed under every arm;
3. off-policy estimates of dssm and content from the logging arm's decisions (`sim.ope`),
   against the truth's mean listen fraction per decision of those arms;
4. per seed, interleaving experiments over every pair of the six (team draft, one pair per arm),
   with each pair's verdict against the A/B's and the truth's, and the listeners each needs
   for 80% power at the effect it measured.

Every step is one of the project's own commands or library calls; the world, the models and
the seeds are fixed, so the tables come out the same on any machine.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import click
import duckdb
import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from abtest.decisions import DecisionColumns, session_events  # noqa: E402
from abtest.interleaving import Preference, mean_difference, preference  # noqa: E402
from abtest.log import EventLog  # noqa: E402
from contracts.catalog import Catalog  # noqa: E402
from contracts.columns import Columns, TruthColumns  # noqa: E402
from contracts.truth import read_truth_sql, truth_path  # noqa: E402

WORLD = {"seed": 11, "tracks": 3000, "artists": 150, "genres": 8, "users": 1500, "content": {"dim": 16, "min_frames": 4, "max_frames": 12}}
TRAINED = {"dssm": {}, "content": {"epochs": 15}, "bpr_knn": {}, "tags": {"epochs": 4, "max_train_tracks": 3000}}
RANKED = ("dssm", "content", "sticky_artist", "bpr_knn", "tags", "random")
CANDIDATES = ("dssm", "content")
EPSILON = 0.5
LOGGING_BASE = "bpr_knn"  # deterministic, like the candidates: every logged propensity is exact
Z_ALPHA, Z_POWER = 1.959964, 0.841621  # two-sided 5%, 80% power
UNITS = {"request": "il", "session": "sil"}  # interleaving's coin per request or per session -> the logs' name prefix
WEIGHTS = ("decision", "listener")  # the difference's weightings (abtest.interleaving)


def run(*args: str) -> None:
    click.secho("$ " + " ".join(args), fg="cyan", err=True)
    subprocess.run([sys.executable, *args], check=True, cwd=REPO)


def treatment(name: str, artifacts: Path) -> dict:
    return {"recommender": name, **({"artifact": str(artifacts / name)} if name in TRAINED else {})}


def prepare(workdir: Path, episodes: int) -> tuple[Path, Path]:
    """The world and the trained artifacts (made once, then reused)."""
    world, artifacts = workdir / "world", workdir / "artifacts"
    if not world.exists():
        (workdir / "world.yml").write_text(yaml.safe_dump(WORLD))
        run("-m", "sim.world", "--config", str(workdir / "world.yml"), "--out", str(world), "--quiet")
    day1 = workdir / "day1.duckdb"
    if not day1.exists():
        cold = workdir / "cold.yml"
        cold.write_text(yaml.safe_dump({"experiments": [{"name": "cold_start", "serving": True, "treatments": [{"recommender": r} for r in ("random", "sticky_artist", "top_pop")]}]}))
        run("-m", "sim.run", "--config", "config/env.yml", "--world", str(world), "--episodes", str(episodes), "--days", "1", "--log", str(day1),
            "--quiet", "experiment", "--experiments", str(cold), "--no-truth")
    for name, config in TRAINED.items():
        if not (artifacts / name).exists():
            extra: list[str] = []
            if config:
                path = workdir / f"train-{name}.yml"
                path.write_text(yaml.safe_dump(config))
                extra = ["--config", str(path)]
            run("-m", "recommenders", "train", name, "--events", str(day1), "--world", str(world), "--out", str(artifacts / name), *extra)
    return world, artifacts


def experiment(workdir: Path, world: Path, name: str, treatments: list[dict], seed: int, episodes: int, days: int, truth: bool) -> Path:
    """Run one in-process experiment (cached by file name) and return its log."""
    log = workdir / f"{name}-seed{seed}.duckdb"
    if not log.exists():
        path = workdir / f"{name}.yml"
        path.write_text(yaml.safe_dump({"experiments": [{"name": name, "serving": True, "treatments": treatments}]}))
        run("-m", "sim.run", "--config", "config/env-weeks.yml", "--world", str(world), "--episodes", str(episodes), "--days", str(days),
            "--seed", str(seed), "--log", str(log), "--quiet", "experiment", "--experiments", str(path), "--processes", "2",
            *([] if truth else ["--no-truth"]))
    return log


def truth_values(log: Path, arms: int) -> tuple[np.ndarray, np.ndarray]:
    """Per arm, had it served every listener: the mean listen fraction per decision ((sum of time
    minus the first track's, which the listener chose) over (events minus one) per session) and
    the mean time per session, from the truth file."""
    t = TruthColumns
    con = duckdb.connect()
    rows = con.execute(
        f'SELECT "{t.ARM}", sum("{t.TIME}" - 1.0) / sum("{t.TRACKS}" - 1), avg("{t.TIME}") FROM {read_truth_sql(truth_path(log))} GROUP BY 1 ORDER BY 1'
    ).fetchall()
    con.close()
    fraction, session = np.full(arms, np.nan), np.full(arms, np.nan)
    for arm, value, time in rows:
        fraction[int(arm)], session[int(arm)] = value, time
    return fraction, session


def ab_users(log: Path, experiment_name: str, arms: int) -> list[np.ndarray]:
    """Per arm, every listener's mean listen fraction per decision (the A/B's per-user metric)."""
    with EventLog.open(log) as event_log:
        events = session_events(event_log, experiment_name)
    decisions = events[events[DecisionColumns.DECISION]]
    per_user = decisions.groupby(["arm", Columns.USER])[DecisionColumns.REWARD].mean()
    return [per_user.loc[arm].to_numpy() if arm in per_user.index.get_level_values(0) else np.zeros(0) for arm in range(arms)]


def ab_decisions(log: Path, experiment_name: str) -> pd.DataFrame:
    """The A/B's decisions (arm, listener, reward), for its difference per decision."""
    with EventLog.open(log) as event_log:
        events = session_events(event_log, experiment_name)
    return events.loc[events[DecisionColumns.DECISION], ["arm", Columns.USER, DecisionColumns.REWARD]]


def ab_decision_needed(decisions: pd.DataFrame, arm_a: int, arm_b: int) -> float:
    """Listeners in all the A/B needs for 80% power with interleaving's own statistic: the difference
    of the two arms' mean listen fraction per decision, delta-method variance clustered by listener."""
    pair = decisions[decisions["arm"].isin([arm_a, arm_b])]
    difference, _, _, se, groups = mean_difference(pair[DecisionColumns.REWARD].to_numpy(), (pair["arm"] == arm_a).to_numpy(), pair[Columns.USER].to_numpy())
    return groups * (Z_ALPHA + Z_POWER) ** 2 * se**2 / difference**2 if difference else math.inf


def ab_verdict(a: np.ndarray, b: np.ndarray) -> tuple[float, str, float]:
    """(relative effect of a over b, verdict, listeners the A/B needs in all for 80% power at that effect)."""
    diff = a.mean() - b.mean()
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    verdict = "A" if diff > Z_ALPHA * se else "B" if diff < -Z_ALPHA * se else "tie"
    pooled = (a.var(ddof=1) + b.var(ddof=1)) / 2
    needed = 2 * 2 * (Z_ALPHA + Z_POWER) ** 2 * pooled / diff**2 if diff else math.inf
    return diff / b.mean(), verdict, needed


def scored(result: Preference, weight: str, a: np.ndarray, b: np.ndarray, true_effect: float, seed: int) -> dict:
    """One pair's row of results.json: interleaving's verdicts and the listeners it needs, beside the
    A/B's on the same pair (`a`, `b`: the A/B arms' per-listener values), at the effect each measured."""
    effect, ab, ab_needed = ab_verdict(a, b)
    # The per-listener preference: (z + z)^2 sd^2 / p^2 listeners entering it, scaled to all the pair's
    # listeners (per session only those with both teams' sessions enter it).
    enter = result.listeners / result.difference_listeners
    pref_needed = (Z_ALPHA + Z_POWER) ** 2 * result.preference_sd**2 / result.preference**2 / enter if result.preference else math.inf
    return {
        "seed": seed, "unit": result.unit, "weight": weight, "a": result.team_a, "b": result.team_b, "true_effect": true_effect, "ab_effect": effect,
        "ab": {"A": result.team_a, "B": result.team_b}.get(ab, "tie"), "interleaving": result.verdict, "il_diff": result.difference_verdict,
        "preference": result.preference, "il_lower": result.lower, "il_upper": result.upper, "il_difference": result.difference,
        "il_difference_lower": result.difference_lower, "il_difference_upper": result.difference_upper,
        "il_listeners": result.difference_listeners, "ab_listeners": len(a) + len(b),
        "il_needed": pref_needed, "il_diff_needed": result.listeners_needed(), "ab_needed": ab_needed,
    }


@click.command()
@click.option("--workdir", type=click.Path(path_type=Path), default=REPO / "data" / "ope", show_default=True)
@click.option("--episodes", type=int, default=600, show_default=True, help="Arrivals per simulated day.")
@click.option("--days", type=int, default=3, show_default=True, help="Days of each experiment.")
@click.option("--seeds", type=int, default=5, show_default=True, help="Repetitions (simulation seeds).")
def main(workdir: Path, episodes: int, days: int, seeds: int) -> None:
    """OPE vs truth and interleaving vs A/B vs truth; prints markdown tables and writes WORKDIR/results.json."""
    from recommenders import registry
    from sim.ope import evaluate

    workdir.mkdir(parents=True, exist_ok=True)
    world, artifacts = prepare(workdir, episodes)
    catalog = Catalog(world)
    logging_arm = {**treatment(LOGGING_BASE, artifacts), "explore": {"epsilon": EPSILON, "mix": [treatment(c, artifacts) for c in CANDIDATES]}}
    arms = [logging_arm] + [treatment(name, artifacts) for name in RANKED]
    pairs = list(itertools.combinations(RANKED, 2))
    results: dict = {"ope": [], "interleaving": [], "truth": []}
    for seed in range(seeds):
        log = experiment(workdir, world, "ab", arms, seed, episodes, days, truth=True)
        truth, truth_session = truth_values(log, len(arms))
        results["truth"].append({"seed": seed, **{name: truth[1 + k] for k, name in enumerate(RANKED)}, "logging": truth[0]})
        with EventLog.open(log) as event_log:
            logged = session_events(event_log, "ab", 0)
        for name in CANDIDATES:
            candidate = registry.make(name, catalog, {}, artifacts / name)
            report = evaluate(logged, catalog, candidate, name)
            true_value = {"decision": truth[1 + RANKED.index(name)], "session": truth_session[1 + RANKED.index(name)]}
            for row in report.to_dicts():
                results["ope"].append({"seed": seed, "candidate": name, "level": row["level"], "estimator": row["estimator"], "value": row["value"],
                                       "lower": row["lower"], "upper": row["upper"], "se": row["se"], "truth": true_value[row["level"]]})
        users = ab_users(log, "ab", len(arms))
        decisions = ab_decisions(log, "ab")
        for unit, prefix in UNITS.items():
            for start in range(0, len(pairs), 8):
                chunk = pairs[start : start + 8]
                name = f"{prefix}{start // 8}"
                interleaved = [{**treatment(a, artifacts), "interleave": treatment(b, artifacts), "interleave_unit": unit} for a, b in chunk]
                il_log = experiment(workdir, world, name, interleaved, seed, episodes, days, truth=False)
                with EventLog.open(il_log) as event_log:
                    events = session_events(event_log, name)
                for k, (a, b) in enumerate(chunk):
                    for weight in WEIGHTS:
                        result = preference(events[events["arm"] == k], a, b, unit=unit, weight=weight)
                        true_effect = truth[1 + RANKED.index(a)] / truth[1 + RANKED.index(b)] - 1
                        row = scored(result, weight, users[1 + RANKED.index(a)], users[1 + RANKED.index(b)], true_effect, seed)
                        row["ab_decision_needed"] = ab_decision_needed(decisions, 1 + RANKED.index(a), 1 + RANKED.index(b))
                        results["interleaving"].append(row)
    (workdir / "results.json").write_text(json.dumps(results, indent=1, default=float))
    click.echo(tables(results))


def tables(results: dict) -> str:
    """The README's markdown tables from `results`."""
    lines = ["| candidate | level | estimator | truth | mean estimate | bias | bias % | sd over seeds | mean se | coverage of 95% intervals |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    ope = results["ope"]
    for name in CANDIDATES:
        for level, estimators in (("decision", ("ips", "snips", "dm", "dr", "switch-dr")), ("session", ("pdis", "wpdis"))):
            for estimator in estimators:
                rows = [r for r in ope if r["candidate"] == name and r["level"] == level and r["estimator"] == estimator]
                if not rows:
                    continue
                values = np.array([r["value"] for r in rows])
                truth = np.array([r["truth"] for r in rows])
                covered = sum(r["lower"] <= r["truth"] <= r["upper"] for r in rows)
                bias = float((values - truth).mean())
                sd = values.std(ddof=1) if len(values) > 1 else float("nan")
                lines.append(f"| {name} | {level} | {estimator} | {truth.mean():.4f} | {values.mean():.4f} | {bias:+.4f} | {100 * bias / truth.mean():+.1f}% | "
                             f"{sd:.4f} | {np.mean([r['se'] for r in rows]):.4f} | {covered}/{len(rows)} |")
    lines += ["", "| pair (A vs B) | true effect of A | A/B | per request: preference | per request: difference per decision | "
              "per request: difference per listener | per session: preference | per session: difference per decision | per session: difference per listener |",
              "|---|---|---|---|---|---|---|---|---|"]
    traffic = ["", "| pair (A vs B) | A/B | A/B, difference per decision | per request: difference per decision | per request: difference per listener | "
               "per session: difference per decision | per session: difference per listener | ratio to the A/B: per request, per decision | "
               "per request, per listener | per session, per decision | per session, per listener | per session, per decision / A/B per decision |",
               "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for a, b in itertools.combinations(RANKED, 2):
        rows = {(unit, weight): [r for r in results["interleaving"] if (r["a"], r["b"], r["unit"], r["weight"]) == (a, b, unit, weight)]
                for unit in UNITS for weight in WEIGHTS}
        base = rows["request", "decision"]
        if not base:
            continue
        true_effect = float(np.mean([r["true_effect"] for r in base]))
        true = a if true_effect > 0.05 else b if true_effect < -0.05 else None
        def agree(rows: list, key: str, true: str | None = true) -> str:
            if true is None:
                return "n/a: " + ", ".join(r[key] for r in rows)
            wrong = sum(r[key] not in (true, "tie") for r in rows)
            return f"{sum(r[key] == true for r in rows)}/{len(rows)}" + (f" ({wrong} wrong)" if wrong else "")
        def needed(rows: list, key: str) -> float:
            return float(np.median([r[key] for r in rows])) if rows else math.nan
        methods = [rows[unit, weight] for unit in UNITS for weight in WEIGHTS]
        verdicts = [agree(base, "ab"), agree(base, "interleaving"), *(agree(m, "il_diff") for m in methods[:2]),
                    agree(methods[2], "interleaving"), *(agree(m, "il_diff") for m in methods[2:])]
        lines.append(f"| {a} vs {b} | {100 * true_effect:+.1f}% | " + " | ".join(verdicts) + " |")
        ab_needed = needed(base, "ab_needed")
        figures = [needed(m, "il_diff_needed") for m in methods]
        ab_decision = needed(base, "ab_decision_needed")
        traffic.append(f"| {a} vs {b} | {ab_needed:,.0f} | {ab_decision:,.0f} | " + " | ".join(f"{x:,.0f}" for x in figures) + " | "
                       + " | ".join(f"{x / ab_needed:.2f}" for x in figures) + f" | {figures[2] / ab_decision:.2f} |")
    lines += traffic
    return "\n".join(lines)


if __name__ == "__main__":
    main()
