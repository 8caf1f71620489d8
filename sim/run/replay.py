"""Experiments in process, and their truth: every listener replayed under every arm.

An experiment run serves an experiments file with botify's own `Service` in process (the
serving path of `botify serve`), optionally after a pre-period of days in which the control
arm's recommender serves everyone (logged as experiment `pre`), so that every listener has a
history before the experiment.

The truth. Every draw of a listener is keyed by (seed, listener, session, step), a returning
session's id by (seed, listener, the session it follows), and a request's seed by (service
seed, session, simulated time); histories belong to a session. So a listener's whole trajectory
(all their sessions over the days, returns included) depends only on what that listener was
served. Serving *everyone* arm k therefore simulates every listener's potential outcome under
arm k, and one run per arm gives all of them. For the arm a listener was assigned, the replay
reproduces the logged sessions exactly (tested). The rows go to the truth file beside the log
(`contracts.truth`), one per replayed session of the experiment's period.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from sim.config import EnvConfig
from sim.run.clients import Client, LocalClient, SwitchClient
from sim.run.shards import ClientSpec, InlineExecutor, ShardExecutor, ShardJob, ShardResult, run_shard
from sim.run.timeline import SessionRecord
from sim.world import World

PRE_EXPERIMENT = "pre"  # the pre-period's one experiment in the log


@dataclass(frozen=True)
class ExperimentSpec:
    """An experiments file served in process.

    Attributes:
        experiments_file: the experiments file (`config/experiments.yml` format); its serving
            experiment is the one run and replayed.
        arm: None serves the experiment as configured (each listener their assigned arm);
            an index serves every listener that arm (a replay).
        first_day: the simulated day the experiment starts; earlier days are the pre-period,
            served by the control arm's recommender to everyone.
        service_seed: the service's seed (`seed` in config/botify.yml), mixed into request seeds.
    """

    experiments_file: Path
    arm: int | None = None
    first_day: int = 1
    service_seed: int = 0


def experiment_client(spec: ExperimentSpec, config: EnvConfig, world: World, log: Path | None) -> Client:
    """The client of an experiment run (`spec.arm` None, writing `log`) or of one arm's replay (no log)."""
    from botify.experiments import build_experiments, build_treatment, load_experiments, single_treatment

    experiments = load_experiments(spec.experiments_file)
    serving = experiments.serving
    day_zero = config.time.start - dt.timedelta(days=1)

    def one_arm(arm: int, name: str, arm_log: Path | None) -> LocalClient:
        treatment = serving.treatments[arm]
        recommender = build_treatment(treatment, world.catalog, f"experiment {serving.name!r}, treatment {arm}")
        return LocalClient(
            treatment.recommender, world.catalog, log=arm_log, day_zero=day_zero, service_seed=spec.service_seed,
            experiments=single_treatment(name, treatment.recommender, recommender),
        )

    if spec.arm is None:
        after: LocalClient = LocalClient(
            serving.name, world.catalog, log=log, day_zero=day_zero, service_seed=spec.service_seed,
            experiments=build_experiments(experiments, world.catalog),
        )
    else:
        after = one_arm(spec.arm, serving.name, None)
    if spec.first_day <= 1:
        return after
    before = one_arm(0, PRE_EXPERIMENT, log if spec.arm is None else None)
    return SwitchClient(before, after, switch_ms(config, spec.first_day))


def switch_ms(config: EnvConfig, day: int) -> int:
    """Epoch milliseconds at which simulated day `day` begins."""
    start = dt.datetime.combine(config.time.start, dt.time(), dt.UTC) + dt.timedelta(days=day - 1)
    return int(start.timestamp() * 1000)


def describe_experiments(experiments_file: Path) -> dict[str, object]:
    """The description a service serving `experiments_file` gives (GET / and /experiments), for the run's summary."""
    from botify.experiments import load_experiments

    config = load_experiments(experiments_file)
    return {"experiments": [e.model_dump(mode="json") for e in config.experiments]}


def simulate(
    config: EnvConfig,
    seed: int,
    days: Sequence[int],
    episodes: int,
    client: ClientSpec,
    *,
    shards: int = 1,
    executor: ShardExecutor | None = None,
) -> list[SessionRecord]:
    """Every session of `days` against `client`, split over `shards` shards run by `executor`, ordered by session id."""
    results = simulate_shards(config, seed, days, episodes, client, shards=shards, executor=executor)
    return sorted((r for result in results for r in result.records), key=lambda r: (r.session, r.user))


def simulate_shards(
    config: EnvConfig,
    seed: int,
    days: Sequence[int],
    episodes: int,
    client: ClientSpec,
    *,
    shards: int = 1,
    executor: ShardExecutor | None = None,
) -> list[ShardResult]:
    """`simulate`'s shards as they ran: each one's sessions and its count of requests and batches served."""
    jobs = [ShardJob(config, seed, tuple(days), episodes, client, shard, shards) for shard in range(shards)]
    return list((executor or InlineExecutor()).map(run_shard, jobs))


def replay(
    config: EnvConfig,
    seed: int,
    days: Sequence[int],
    episodes: int,
    spec: ExperimentSpec,
    *,
    shards: int = 1,
    executor: ShardExecutor | None = None,
) -> dict[str, list[object]]:
    """Potential outcomes: the experiment's sessions under every arm, as truth-file columns.

    Runs the same days, seed and arrivals once per arm of the serving experiment with every
    listener served that arm (the pre-period as in the experiment run), and keeps the sessions
    that start on or after `spec.first_day`. Sessions are counted as the log counts them
    (`contracts.sessions`): the listener's own first track is an event with time 1.0, so
    `tracks` and `time` are the simulator's listened recommendations plus one.
    """
    from botify.experiments import load_experiments
    from contracts.columns import TruthColumns as T
    from contracts.sessions import logged_time, logged_tracks

    serving = load_experiments(spec.experiments_file).serving
    start_ms = switch_ms(config, spec.first_day)
    columns: dict[str, list[object]] = {name: [] for name in T.ALL}
    for arm in range(len(serving.treatments)):
        client = ClientSpec("experiment", experiment=replace(spec, arm=arm))
        for record in simulate(config, seed, days, episodes, client, shards=shards, executor=executor):
            if record.start_ts < start_ms:
                continue
            for name, value in (
                (T.EXPERIMENT, serving.name), (T.ARM, arm), (T.USER, record.user), (T.SESSION, record.session),
                (T.START, record.start_ts), (T.TRACKS, logged_tracks(record.tracks)), (T.TIME, logged_time(record.time)),
            ):
                columns[name].append(value)
    return columns
