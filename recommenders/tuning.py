"""Hyperparameter search with Ray Tune: TPE (Optuna) proposes, ASHA stops bad trials early.

A study searches one model's `SearchSpace` (`recommenders.models.config.SEARCH_SPACES`): keys
of its training config and its serving parameters. Each trial trains the model with the
proposed training keys (or reuses the artifact of an identical earlier training, from the
study's cache) and scores it with the proposed serving parameters, in `rungs` steps of growing
evidence, reporting the running score after each; ASHA (Li et al. 2020, "A System for
Massively Parallel Hyperparameter Tuning", MLSys) stops a trial whose running score falls
behind at a rung. The objectives:

- offline: MRR of the held-out liked track on the log's last day (`recommenders.evaluation`);
  rung r scores the first r of `rungs` equal shares of the test cases;
- online: the paired, simulated effect on mean time per session against a control recommender
  on a day after the log (sim's `online_effect`, reached through the entry point `online` of
  the group `botify_lab.objectives`); rung r adds a simulation of `episodes / rungs` more
  arrivals, with its own seed.

Trials run one at a time (`max_concurrent_trials=1`) and Optuna's TPE sampler (Bergstra et al.
2011, "Algorithms for Hyper-Parameter Optimization", NeurIPS) is seeded, so the same study,
trial budget and seed give the same leaderboard as long as the time budget does not cut it.
Ray and Optuna are imported only when a search runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal, Protocol

from contracts.catalog import Catalog
from contracts.config import Strict
from recommenders import registry
from recommenders.evaluation import Cases, evaluate
from recommenders.models.config import Dim, SearchSpace
from recommenders.models.sessions import SessionLog

OBJECTIVES_GROUP = "botify_lab.objectives"
METRIC = "score"
Objective = Literal["offline", "online"]


class TuningError(ValueError):
    """A search cannot start or finished without a usable trial; the message says why."""


class OnlineObjective(Protocol):
    """The online objective's signature (sim's `online_effect`): the paired effect of `treatment` against `control`."""

    def __call__(
        self, world: Path, treatment: Mapping[str, Any], control: Mapping[str, Any], *, date: dt.date, seed: int, episodes: int, env: Path | None = None,
    ) -> dict[str, float]: ...


def online_objective() -> OnlineObjective:
    """The installed online objective (entry point `online` of `botify_lab.objectives`), or `TuningError`."""
    found = entry_points(group=OBJECTIVES_GROUP, name="online")
    if not found:
        raise TuningError(f"no online objective is installed (entry point 'online' of {OBJECTIVES_GROUP!r}, which the project's "
                          "sim package declares): reinstall the project with `pip install -e .` or use --objective offline")
    return next(iter(found)).load()


@dataclass
class Study:
    """Everything a trial needs; shipped to Ray's workers once.

    Attributes:
        name: the registry name of the model.
        world: the world directory.
        objective: "offline" or "online".
        base: the training config the proposed keys are applied to (None: the model has none).
        space: the dimensions searched (already narrowed to what `--search` asks for).
        train_log: the sessions the model is trained on.
        cache: directory of the trained artifacts, one per distinct training config.
        rungs: steps of growing evidence a trial reports (ASHA's resource).
        seed: seeds the cases' tie-breaks and the online simulations.
        cases: the offline test cases.
        control: the online control, {"name", "params", "artifact"}.
        date: the simulated day of the online objective.
        episodes: listener arrivals of the online objective, over all rungs.
        env: the simulator's config file of the online objective, or None.
        fixed_serving: serving parameters applied to every trial before the proposed ones.
    """

    name: str
    world: Path
    objective: Objective
    base: Strict | None
    space: SearchSpace
    train_log: SessionLog
    cache: Path
    rungs: int = 3
    seed: int = 0
    cases: Cases | None = None
    control: dict[str, Any] = field(default_factory=dict)
    date: dt.date | None = None
    episodes: int = 2000
    env: Path | None = None
    fixed_serving: dict[str, Any] = field(default_factory=dict)


def training_config(study: Study, proposed: Mapping[str, Any]) -> Strict | None:
    """The base training config with the proposed keys applied and validated again (None without a config)."""
    if study.base is None:
        return None
    return type(study.base).model_validate({**study.base.model_dump(), **proposed})


def artifact_for(study: Study, proposed: Mapping[str, Any]) -> Path:
    """The artifact of the model trained with the proposed training keys: from the cache, else trained now."""
    config = training_config(study, proposed)
    key = hashlib.sha256(json.dumps(config.model_dump(mode="json") if config is not None else {}, sort_keys=True).encode()).hexdigest()[:16]
    out = study.cache / key
    if (out / "model.json").is_file():
        return out
    cls = registry.get_class(study.name)
    model = cls(Catalog(study.world))
    options = {"config": config, "device": "cpu", "progress": False} if config is not None else {}
    model.fit(study.train_log if config is not None else study.train_log.to_frame(), **options)  # type: ignore[attr-defined]
    partial = study.cache / f"{key}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    model.save(partial)  # type: ignore[attr-defined]
    partial.rename(out)
    return out


def split_cases(cases: Cases, parts: int) -> list[Cases]:
    """`cases` in `parts` consecutive shares of (nearly) equal size."""
    bounds = [round(len(cases) * i / parts) for i in range(parts + 1)]
    return [
        Cases(cases.requests[lo:hi], cases.positives[lo:hi], cases.negatives[lo:hi], cases.relevant[lo:hi])
        for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo
    ]


def run_trial(config: dict[str, Any], study: Study) -> None:
    """One trial (Ray Tune's function trainable): train or reuse, then report the running score after each rung."""
    from ray import tune

    proposed_train, proposed_serve = dict(config.get("train") or {}), dict(config.get("serve") or {})
    artifact = artifact_for(study, proposed_train)
    params = {**study.fixed_serving, **proposed_serve}
    if study.objective == "offline":
        assert study.cases is not None
        model = registry.make(study.name, Catalog(study.world), params, artifact)
        total, count = 0.0, 0.0
        for rung, cases in enumerate(split_cases(study.cases, study.rungs), start=1):
            result = evaluate(model, cases, k=10, seed=study.seed)  # type: ignore[arg-type]
            total, count = total + result["mrr"] * result["cases"], count + result["cases"]
            tune.report({METRIC: total / count, "cases": count, "rung": rung})
        return
    objective = online_objective()
    assert study.date is not None
    treated = control = users = 0.0
    share = max(1, study.episodes // study.rungs)
    for rung in range(1, study.rungs + 1):
        result = objective(study.world, {"name": study.name, "params": params, "artifact": str(artifact)}, study.control,
                           date=study.date, seed=study.seed + rung, episodes=share, env=study.env)
        treated += result["treatment"] * result["users"]
        control += result["control"] * result["users"]
        users += result["users"]
        tune.report({METRIC: treated / control - 1.0, "treatment": treated / users, "control": control / users, "users": users, "rung": rung})


def ray_space(space: SearchSpace) -> dict[str, dict[str, Any]]:
    """The study's dimensions as Ray Tune's param space: {"train": {...}, "serve": {...}}."""
    from ray import tune

    def one(dim: Dim) -> Any:
        if dim.kind == "choice":
            return tune.choice(list(dim.choices))
        if dim.kind == "int":
            return tune.lograndint(int(dim.low), int(dim.high) + 1) if dim.log else tune.randint(int(dim.low), int(dim.high) + 1)
        return tune.loguniform(dim.low, dim.high) if dim.log else tune.uniform(dim.low, dim.high)

    return {part: {key: one(dim) for key, dim in dims.items()} for part, dims in (("train", space.train), ("serve", space.serve)) if dims}


@dataclass(frozen=True)
class Row:
    """One trial of the leaderboard.

    Attributes:
        trial: the trial's number, in the order trials started (1-based).
        score: the last running score it reported (NaN when it reported none).
        rungs: how many rungs it completed (fewer than the study's: stopped early by ASHA).
        train: the training keys it tried.
        serve: the serving parameters it tried.
        error: why it failed, if it did.
    """

    trial: int
    score: float
    rungs: int
    train: dict[str, Any]
    serve: dict[str, Any]
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A flat mapping: trial, score, rungs, `train.KEY` and `serve.KEY` columns, error."""
        return {"trial": self.trial, "score": self.score, "rungs": self.rungs,
                **{f"train.{k}": v for k, v in self.train.items()}, **{f"serve.{k}": v for k, v in self.serve.items()}, "error": self.error}


def leaderboard(rows: list[Row], rungs: int) -> list[Row]:
    """Trials that completed every rung first, by score (best first), then the stopped ones, then the failed ones."""
    def key(row: Row) -> tuple[int, float, int]:
        finished = 0 if row.error is None and row.rungs >= rungs else 1 if row.error is None else 2
        return finished, -row.score if math.isfinite(row.score) else math.inf, row.trial

    return sorted(rows, key=key)


def search(study: Study, *, trials: int, time_budget_s: float | None, seed: int, storage: Path) -> list[Row]:
    """Run the search and return its leaderboard (`leaderboard` order).

    Starts Ray on one CPU unless it is already running (a test module's one `ray.init`), and
    shuts it down afterwards only if it started it here.
    """
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no progress tables on stdout
    import optuna
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    space = ray_space(study.space)
    if not space:
        raise TuningError(f"nothing to search for {study.name!r}: its search space is empty for this --search")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(run_trial, study=study), {"cpu": 1}),
            param_space=space,
            tune_config=tune.TuneConfig(
                metric=METRIC, mode="max", num_samples=trials, max_concurrent_trials=1, time_budget_s=time_budget_s,
                search_alg=OptunaSearch(seed=seed), scheduler=ASHAScheduler(max_t=study.rungs, grace_period=1, reduction_factor=2),
                reuse_actors=True,  # one worker process keeps its imports and the online control's cached sessions
                trial_name_creator=lambda trial: f"trial_{trial.trial_id}",
                trial_dirname_creator=lambda trial: f"trial_{int(trial.experiment_tag.split('_')[0]):04d}",
            ),
            run_config=tune.RunConfig(name="search", storage_path=str(storage.resolve()), verbose=0),
        )
        grid = tuner.fit()
    finally:
        if started_here:
            ray.shutdown()
    rows = []
    for index, result in enumerate(sorted((grid[i] for i in range(len(grid))), key=lambda r: Path(r.path).name), start=1):
        metrics = result.metrics or {}
        config = result.config or {}
        rows.append(Row(
            trial=index, score=float(metrics.get(METRIC, math.nan)), rungs=int(metrics.get("rung", 0)),
            train=dict(config.get("train") or {}), serve=dict(config.get("serve") or {}),
            error=None if result.error is None else f"{type(result.error).__name__}: {result.error}".splitlines()[0],
        ))
    return leaderboard(rows, study.rungs)
