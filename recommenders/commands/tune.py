"""`recommenders tune NAME`: search a model's training config and serving parameters, write the best as configs."""

from __future__ import annotations

import datetime as dt
import math
import time
from pathlib import Path
from typing import Any

import click
import numpy as np
import yaml

from recommenders import registry
from recommenders.base import Fittable
from recommenders.commands.common import day_range, open_catalog, parse_params, read_sessions
from recommenders.evaluation import build_cases
from recommenders.models.config import SEARCH_SPACES, ConfigError, SearchSpace, load_config
from recommenders.models.nn import DependencyNotInstalled, TrainingError
from recommenders.tracking import open_tracker, tracking_options
from recommenders.tuning import Row, Study, TuningError, online_objective, search


def _log_dates(log: Any) -> tuple[dt.date, dt.date]:
    """(first, last) simulated day the log's sessions start on."""
    first, last = (dt.datetime.fromtimestamp(int(day) * 86_400, dt.UTC).date() for day in (log.session_day.min(), log.session_day.max()))
    return first, last


def render(rows: list[Row], rungs: int, top: int) -> list[str]:
    """The leaderboard as text lines: rank, trial, score, rungs completed, then every searched value."""
    keys = [f"train.{k}" for k in dict.fromkeys(k for row in rows for k in row.train)] + [f"serve.{k}" for k in dict.fromkeys(k for row in rows for k in row.serve)]
    header = f"{'rank':>4} {'trial':>5} {'score':>9} {'rungs':>5}  " + "  ".join(keys)
    lines = [header]
    for rank, row in enumerate(rows[:top], start=1):
        values = {**{f"train.{k}": v for k, v in row.train.items()}, **{f"serve.{k}": v for k, v in row.serve.items()}}
        cells = "  ".join(_cell(values.get(key)).rjust(len(key)) for key in keys)
        status = f"{row.rungs}/{rungs}" + ("" if row.error is None else " failed")
        lines.append(f"{rank:>4} {row.trial:>5} {row.score:>9.4f} {status:>5}  {cells}")
    return lines


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


@click.command("tune")
@click.argument("name")
@click.option("--events", type=click.Path(path_type=Path), required=True, help="The event log: a DuckDB file (table `events`) or its Parquet export.")
@click.option("--world", type=click.Path(path_type=Path), required=True, help="The world directory the log was simulated in.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Directory for the best configs (train.yml, serving.yml), the leaderboard and Ray's trial records.")
@click.option("--holdout-days", type=click.IntRange(min=0), default=0, show_default=True,
              help="Leave the log's last N days out of the study altogether (e.g. the day an A/B test will be run on).")
@click.option("--objective", type=click.Choice(["offline", "online"]), default="offline", show_default=True,
              help="offline: MRR on the log's last day (trained on the days before); online: simulated paired effect on mean time per session against --control on the day after the log.")
@click.option("--search", "part", type=click.Choice(["all", "training", "serving"]), default="all", show_default=True,
              help="Which half of the model's search space to search (serving: one training, many serving parameters).")
@click.option("--trials", type=click.IntRange(min=1), default=20, show_default=True, help="Trial budget.")
@click.option("--time-budget", type=click.FloatRange(min=1.0), default=None, help="Seconds after which no new trial starts and running ones stop (default: none).")
@click.option("--rungs", type=click.IntRange(min=1, max=10), default=3, show_default=True, help="Steps of growing evidence per trial, at which ASHA may stop it.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seeds the search (Optuna's TPE), the offline cases and the online simulations.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None, help="Base training config (YAML) the searched keys are applied to.")
@click.option("--param", "pairs", multiple=True, metavar="KEY=VALUE", help="A fixed serving parameter (repeatable), applied before the searched ones.")
@click.option("--control", default="sticky_artist", show_default=True, help="Online: the control recommender (registry name; untrained).")
@click.option("--episodes", type=click.IntRange(min=10), default=2000, show_default=True, help="Online: listener arrivals simulated per trial (split over the rungs).")
@click.option("--online-seed", type=click.IntRange(min=0), default=None,
              help="Online: seed of the simulated listeners [default: --seed + 1000, other listeners' draws than a log simulated with seed 0].")
@click.option("--env", "env_path", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None, help="Online: the simulator's config (default: its defaults).")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, help="Leaderboard rows printed.")
@tracking_options("tune")
def tune_command(
    name: str, events: Path, world: Path, out: Path, holdout_days: int, objective: str, part: str, trials: int, time_budget: float | None, rungs: int,
    seed: int, config_path: Path | None, pairs: tuple[str, ...], control: str, episodes: int, online_seed: int | None,
    env_path: Path | None, top: int, tracking_uri: str, mlflow_experiment: str, no_track: bool,
) -> None:
    """Search the training config and serving parameters of NAME with Ray Tune; write the best as configs.

    Optuna's TPE (seeded) proposes a trial from the model's search space (SEARCH_SPACES in
    recommenders/models/config.py); the trial trains the model with it (an identical training
    config is trained once and reused) and is scored in --rungs steps, after each of which ASHA
    may stop it. Offline, the score is the MRR of the held-out liked track on the log's last day
    (as `recommenders evaluate`), the model trained on the days before. Online, the model is
    trained on the whole log and scored by simulating the day after it twice in process, under
    the model and under --control with common random numbers: the paired effect on mean time per
    session (0.05 = +5%). Trials run one at a time, so the same inputs and --seed give the same
    leaderboard unless --time-budget cuts the search short.

    Writes OUT/train.yml (the best training config, for `recommenders train --config`),
    OUT/serving.yml (the best serving parameters, for a treatment's `params`), OUT/leaderboard.csv,
    and Ray's records under OUT/search; prints the leaderboard. The run is recorded in MLflow.
    """
    try:
        cls = registry.get_class(name)
    except registry.RegistryError as error:
        raise click.ClickException(str(error)) from None
    if not issubclass(cls, Fittable) or name not in SEARCH_SPACES:
        raise click.ClickException(f"recommender {name!r} has no search space; tunable: {', '.join(sorted(SEARCH_SPACES))}")
    full = SEARCH_SPACES[name]
    space = SearchSpace(train=full.train if part in ("all", "training") else {}, serve=full.serve if part in ("all", "serving") else {})
    fixed = parse_params(pairs)
    clash = sorted(set(fixed) & set(space.serve))
    if clash:
        raise click.BadParameter(f"{', '.join(clash)} is searched; fix it with --search training or drop it", param_hint="--param")
    try:
        base = load_config(cls.config_class, config_path) if cls.config_class is not None else None
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    if objective == "online":
        try:
            online_objective()
            registry.get_class(control)
        except (TuningError, registry.RegistryError) as error:
            raise click.ClickException(str(error)) from None
    catalog = open_catalog(world)
    log = read_sessions(events, catalog).split_days(holdout_days)[0] if holdout_days else read_sessions(events, catalog)
    if log.n_sessions == 0:
        raise click.ClickException(f"event log {events} has no sessions")
    first, last = _log_dates(log)
    study_args: dict[str, Any] = {}
    if objective == "offline":
        train_log, test_log = log.split_days(1)
        if train_log.n_sessions == 0:
            raise click.ClickException(f"the offline objective tests on the log's last day and trains on the days before, but {events} has one day ({first}); "
                                       "use a log of two days or more, or --objective online")
        like = getattr(base, "like_threshold", 0.5)
        cases = build_cases(train_log, test_log, catalog.n_tracks, like, seed=seed)
        if len(cases) == 0:
            raise click.ClickException(f"no test case on {last}: no session there has a liked track the listener had not heard before")
        study_args["cases"] = cases
        click.echo(f"{name}: offline search; training on {train_log.n_sessions} sessions ({day_range(train_log)}), "
                   f"testing on {len(cases)} held-out likes ({day_range(test_log)})")
    else:
        train_log = log
        date = last + dt.timedelta(days=1)
        study_args.update(control={"name": control, "params": {}, "artifact": None}, date=date, episodes=episodes, env=env_path)
        click.echo(f"{name}: online search against {control}; training on {log.n_sessions} sessions ({day_range(log)}), "
                   f"simulating {episodes} arrivals on {date} per trial")
    out.mkdir(parents=True, exist_ok=True)
    study = Study(
        name=name, world=world.resolve(), objective=objective,  # type: ignore[arg-type]
        base=base, space=space, train_log=train_log, cache=(out / "artifacts").resolve(), rungs=rungs,
        seed=seed if objective == "offline" else (online_seed if online_seed is not None else seed + 1000),
        fixed_serving=fixed, **study_args,
    )
    study.cache.mkdir(parents=True, exist_ok=True)
    tags = {"command": "tune", "model": name}
    with open_tracker(tracking_uri, mlflow_experiment, f"tune {name} {objective}", enabled=not no_track, tags=tags) as tracker:
        tracker.log_params({"model": name, "objective": objective, "search": part, "trials": trials, "time_budget": time_budget, "rungs": rungs,
                            "seed": seed, "events": str(events), "world": str(world), "control": control if objective == "online" else None,
                            "episodes": episodes if objective == "online" else None, "fixed": fixed})
        started = time.perf_counter()
        try:
            rows = search(study, trials=trials, time_budget_s=time_budget, seed=seed, storage=out)
        except (TuningError, TrainingError, DependencyNotInstalled) as error:
            raise click.ClickException(str(error)) from None
        seconds = time.perf_counter() - started
        done = [row for row in rows if row.error is None and row.rungs >= rungs and math.isfinite(row.score)]
        if not done:
            failed = next((row.error for row in rows if row.error), None)
            raise click.ClickException(f"no trial of {name!r} completed every rung" + (f"; a trial failed with {failed}" if failed else ""))
        best = done[0]
        best_config = {**(base.model_dump(mode="json") if base is not None else {}), **best.train}
        serving = {**fixed, **best.serve}
        (out / "train.yml").write_text(yaml.safe_dump(_plain(best_config), sort_keys=False))
        (out / "serving.yml").write_text(yaml.safe_dump(_plain(serving), sort_keys=False))
        import pandas as pd

        pd.DataFrame([row.to_dict() for row in rows]).to_csv(out / "leaderboard.csv", index=False)
        for row in rows:
            tracker.log_metrics({"trial_score": row.score}, step=row.trial)
        tracker.log_metrics({"best_score": best.score, "search_seconds": seconds, "trials": len(rows), "stopped_early": sum(r.rungs < rungs for r in rows)})
        tracker.log_table([row.to_dict() for row in rows], "leaderboard.json")
        for file in ("train.yml", "serving.yml", "leaderboard.csv"):
            tracker.log_artifact(out / file)
    unit = "MRR" if objective == "offline" else f"effect on mean time per session vs {control}"
    click.echo(f"{len(rows)} trials in {seconds:.0f} s ({sum(r.rungs < rungs and r.error is None for r in rows)} stopped early by ASHA); score = {unit}")
    for line in render(rows, rungs, top):
        click.echo(line)
    click.echo(f"best: trial {best.trial}, score {best.score:.4f}")
    click.echo(f"  training config: {out / 'train.yml'} (recommenders train {name} --config {out / 'train.yml'})")
    click.echo(f"  serving params:  {out / 'serving.yml'} {serving}")


def _plain(mapping: dict[str, Any]) -> dict[str, Any]:
    """Numpy scalars (as Optuna proposes them) as Python numbers, for YAML."""
    return {key: value.item() if isinstance(value, np.generic) else value for key, value in mapping.items()}
