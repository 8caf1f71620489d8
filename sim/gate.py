"""`python -m sim.gate NAME`: a recommender against a baseline on the same simulated listeners, for CI.

    python -m sim.gate my_model --world data/world                     # against sticky_artist, 2,000 listeners
    python -m sim.gate my_model --world data/world --param window=2 --baseline top_pop --max-drop 1%

Both arms simulate the same day with the same seed, in process, through botify's own `Service`
(`sim.run`'s `local:` path). Every draw of a listener is keyed by (seed, listener, session,
step), so each listener meets both recommenders in the same state (common random numbers), and
each listener's difference between the arms is the effect on that listener alone: the paired
interval (`abtest.paired`) is far narrower than an A/B test's over the same listeners split in
two. Sessions count as the log counts them (`contracts.sessions`).

The verdict, exit 1 when any part fails:

* each metric's paired relative effect, direction-aware (directions from `abtest.metrics`): it
  fails when the whole interval lies beyond `--max-drop` in the bad direction;
* the recommender's p99 serving latency (ms, each request's share of its batch call, as logged)
  against `--max-p99-ms`; a probe of single calls before the run fails a slow recommender at once;
* its error rate (requests on which it raised or broke a rule of its answers, which the baseline
  then answered) against `--max-error-rate`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from contracts.config import ConfigError
from sim.config import DEFAULT_ENV_CONFIG, EnvConfig, env_config_or_defaults
from sim.run.timeline import SessionRecord

METRICS = ("time", "sessions", "mean_time_per_session", "mean_tracks_per_session")  # per-user, as `abtest` names them
PROBE_REQUESTS = 20  # single calls timed before the run: a slow recommender fails in seconds


@dataclass(frozen=True)
class Arm:
    """One arm's run: per-user metric values and its serving record.

    Attributes:
        name: the registry name served.
        users: the listeners, sorted.
        values: metric name -> one value per listener of `users`.
        latency_ms: serving latency of every request ('next' event), milliseconds.
        errors: requests on which the recommender broke a rule other than the latency budget.
        seconds: wall time of the simulation.
    """

    name: str
    users: np.ndarray
    values: dict[str, np.ndarray]
    latency_ms: np.ndarray
    errors: int
    seconds: float

    @property
    def requests(self) -> int:
        return len(self.latency_ms)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p99_ms(self) -> float:
        return float(np.percentile(self.latency_ms, 99)) if self.requests else 0.0


def per_user(records: Sequence[SessionRecord]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The listeners (sorted) and each metric of `METRICS` per listener, sessions counted as the log counts them."""
    from contracts.sessions import logged_time, logged_tracks

    users, index = np.unique(np.array([r.user for r in records], dtype=np.int64), return_inverse=True)
    tracks = np.bincount(index, logged_tracks(np.array([r.tracks for r in records], dtype=np.float64)), len(users))
    total = np.bincount(index, logged_time(np.array([r.time for r in records], dtype=np.float64)), len(users))
    sessions = np.bincount(index, minlength=len(users)).astype(np.float64)
    values = {
        "time": total,
        "sessions": sessions,
        "mean_time_per_session": total / sessions,
        "mean_tracks_per_session": tracks / sessions,
    }
    return users, values


def run_arm(
    config: EnvConfig,
    seed: int,
    episodes: int,
    days: int,
    name: str,
    params: dict[str, Any],
    artifact: str | None,
    fallback: str | None,
    log: Path,
) -> Arm:
    """Simulate `days` days of `episodes` arrivals served by `name` in process, writing `log`, and read the arm back."""
    from contracts.catalog import Catalog
    from contracts.eventlog import init_log, open_log
    from contracts.eventlog.writer import record_start, world_row
    from sim.run.clients import LOCAL_EXPERIMENT
    from sim.run.replay import simulate
    from sim.run.shards import ClientSpec

    declared = [{"experiment": LOCAL_EXPERIMENT, "treatment": 0, "recommender": name, "serving": True}]
    # The gate owns its logs: a kept log of an earlier run is replaced, never appended to.
    record_start(init_log(log, reset=True), declared, time.time_ns() // 1000, world_row(Catalog(config.world)))
    spec = ClientSpec("local", name, artifact, params=params, log=log, fallback=fallback)
    started = time.perf_counter()
    records = simulate(config, seed, range(1, days + 1), episodes, spec)
    seconds = time.perf_counter() - started
    users, values = per_user(records)
    with open_log(log) as connection:
        rows = connection.execute("SELECT latency, error FROM events WHERE message = 'next'").fetchall()
    latency_ms = np.array([row[0] or 0.0 for row in rows], dtype=np.float64) * 1e3
    errors = sum(1 for row in rows if row[1] is not None and row[1] != "slow")
    return Arm(name, users, values, latency_ms, errors, seconds)


def probe_ms(name: str, catalog: Any, params: dict[str, Any], artifact: str | None) -> float:
    """Median milliseconds of single `recommend` calls over `PROBE_REQUESTS` synthetic requests (after one warm-up);
    a call that raises counts with its time (errors are the run's to count)."""
    from recommenders.registry import make
    from recommenders.testing import make_requests

    recommender = make(name, catalog, params, artifact)
    requests = make_requests(catalog, PROBE_REQUESTS + 1)
    times = []
    for i, request in enumerate(requests):
        started = time.perf_counter()
        try:
            recommender.recommend(request)
        except Exception:
            pass
        if i:
            times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def load_config(path: Path, world: Path | None) -> EnvConfig:
    """The simulator config (defaults when the default file is absent, e.g. in a plugin's own checkout), with `world`."""
    config = env_config_or_defaults(path)
    if world is not None:
        config = config.model_copy(update={"world": world})
    if not (config.world / "public").is_dir():
        raise ConfigError(f"{config.world} is not a world directory; generate one with `python -m sim.world --out {config.world}`, or pass --world")
    return config


@dataclass(frozen=True)
class Verdict:
    """One line of the gate: what was measured, and whether it passed."""

    name: str
    passed: bool
    line: str


def judge(plugin: Arm, baseline: Arm, *, alpha: float, max_drop: float, max_p99_ms: float, max_error_rate: float, width: int = 10) -> list[Verdict]:
    """The gate's verdicts: one per metric (paired, direction-aware), then latency and error rate."""
    from abtest.metrics import default_metrics
    from abtest.paired import paired, regressed

    if not np.array_equal(plugin.users, baseline.users):
        raise click.ClickException("the two arms simulated different listeners; common random numbers are broken (a bug: please report it)")
    directions = {name: metric.higher_is_better for name, metric in default_metrics(METRICS).items()}
    level = f"{100 * (1 - alpha):g}% CI"
    verdicts = []
    for name in METRICS:
        result = paired(baseline.values[name], plugin.values[name], alpha=alpha)
        worse = regressed(result, higher_is_better=directions[name], max_drop=max_drop)
        line = (
            f"{name:<24} {result.control:{width}.4f} {result.treatment:{width}.4f}  "
            f"{100 * result.effect:+7.2f}% ({level} {100 * result.lower:+.2f}% .. {100 * result.upper:+.2f}%)"
        )
        if worse:
            line += f": significantly {'lower' if directions[name] else 'higher'} beyond the allowed {100 * max_drop:g}%"
        verdicts.append(Verdict(name, not worse, line))
    p99 = plugin.p99_ms
    verdicts.append(
        Verdict(
            "latency p99",
            p99 <= max_p99_ms,
            f"{'latency p99 (ms)':<24} {baseline.p99_ms:{width}.4f} {p99:{width}.4f}  budget {max_p99_ms:g} ms{'' if p99 <= max_p99_ms else ': over budget'}",
        )
    )
    rate = plugin.error_rate
    verdicts.append(
        Verdict(
            "error rate",
            rate <= max_error_rate,
            f"{'error rate':<24} {baseline.error_rate:{width}.4f} {rate:{width}.4f}  budget {max_error_rate:g} "
            f"({plugin.errors} of {plugin.requests} requests){'' if rate <= max_error_rate else ': over budget'}",
        )
    )
    return verdicts


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("name")
@click.option("--baseline", default="sticky_artist", show_default=True, help="Registry name of the baseline; it also answers where NAME fails.")
@click.option("--param", "pairs", multiple=True, metavar="KEY=VALUE", help="A construction parameter of NAME (repeatable), as in the experiments file.")
@click.option("--baseline-param", "baseline_pairs", multiple=True, metavar="KEY=VALUE", help="A construction parameter of the baseline (repeatable).")
@click.option("--artifact", default=None, help="Artifact directory of a trainable NAME.")
@click.option("--baseline-artifact", default=None, help="Artifact directory of a trainable baseline.")
@click.option(
    "--world", type=click.Path(file_okay=False, path_type=Path), default=None, help="World directory (overrides the config's `world`; default data/world)."
)
@click.option(
    "--config", "config_path", type=click.Path(path_type=Path), default=DEFAULT_ENV_CONFIG, show_default=True, help="Simulator config (YAML); defaults when absent."
)
@click.option("--episodes", type=click.IntRange(min=2), default=2000, show_default=True, help="Listener arrivals (sessions) per simulated day.")
@click.option("--days", type=click.IntRange(min=1), default=1, show_default=True, help="Simulated days.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of arrivals and listener decisions (both arms share it).")
@click.option(
    "--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True, help="Intervals have confidence 1 - alpha."
)
@click.option("--max-drop", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Largest tolerated worsening, in % of the baseline.")
@click.option("--max-p99-ms", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True, help="Budget of NAME's p99 serving latency, ms.")
@click.option("--max-error-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True, help="Budget of NAME's error rate (failed requests / requests).")
@click.option(
    "--keep-logs",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write both arms' event logs into this directory (default: a temporary one).",
)
def main(
    name: str,
    baseline: str,
    pairs: tuple[str, ...],
    baseline_pairs: tuple[str, ...],
    artifact: str | None,
    baseline_artifact: str | None,
    world: Path | None,
    config_path: Path,
    episodes: int,
    days: int,
    seed: int,
    alpha: float,
    max_drop: float,
    max_p99_ms: float,
    max_error_rate: float,
    keep_logs: Path | None,
) -> None:
    """Gate recommender NAME against --baseline on the same simulated listeners; exit 1 on a regression.

    Prints each metric's paired effect (NAME over the baseline, per listener) with its interval,
    NAME's p99 latency and error rate against their budgets, then passes or fails.
    """
    from contracts.catalog import Catalog, CatalogError
    from contracts.eventlog import LogError
    from recommenders.base import ArtifactError
    from recommenders.commands.common import parse_params
    from recommenders.registry import RegistryError
    from sim.run.clients import ServiceError

    started = time.perf_counter()
    params, baseline_params = parse_params(pairs), parse_params(baseline_pairs)
    try:
        config = load_config(config_path, world)
        catalog = Catalog(config.world)
        median_ms = probe_ms(name, catalog, params, artifact)
    except (ConfigError, CatalogError, RegistryError, ArtifactError) as error:
        raise click.ClickException(str(error)) from None
    except Exception as error:  # the plugin's own constructor or loader failed: one line naming it
        raise click.ClickException(f"recommender {name!r} cannot be built: {type(error).__name__}: {error}") from None
    if median_ms > max_p99_ms:
        raise click.ClickException(
            f"gate failed: {name!r} takes {median_ms:.2f} ms per recommend() call (median of {PROBE_REQUESTS} probe requests), "
            f"over the p99 budget of {max_p99_ms:g} ms; nothing simulated"
        )
    click.echo(f"{name} against {baseline}: {episodes} arrivals/day x {days} day(s), seed {seed}, same listeners in both arms")
    with tempfile.TemporaryDirectory(prefix="botify-gate-") as scratch:
        logs = keep_logs if keep_logs is not None else Path(scratch)
        logs.mkdir(parents=True, exist_ok=True)
        try:
            base = run_arm(config, seed, episodes, days, baseline, baseline_params, baseline_artifact, None, logs / "baseline.duckdb")
            plugin = run_arm(config, seed, episodes, days, name, params, artifact, baseline, logs / "plugin.duckdb")
        except (RegistryError, ArtifactError, ServiceError, LogError) as error:
            raise click.ClickException(str(error)) from None
    width = max(10, len(name), len(baseline))
    verdicts = judge(plugin, base, alpha=alpha, max_drop=max_drop / 100, max_p99_ms=max_p99_ms, max_error_rate=max_error_rate, width=width)
    click.echo(f"{len(plugin.users)} listeners; {base.requests} and {plugin.requests} requests; simulated in {base.seconds:.2f} s and {plugin.seconds:.2f} s")
    click.echo(f"{'':<5}{'metric':<24} {baseline:>{width}} {name:>{width}}  effect")
    for verdict in verdicts:
        click.echo(f"{'ok' if verdict.passed else 'FAIL':<5}{verdict.line}")
    failed = [v.name for v in verdicts if not v.passed]
    wall = time.perf_counter() - started
    if failed:
        raise click.ClickException(f"gate failed for {name!r} against {baseline!r}: {', '.join(failed)} ({wall:.1f} s)")
    click.echo(f"gate passed: {name} against {baseline} ({wall:.1f} s)")


if __name__ == "__main__":
    main()
