"""Micro-benchmark of the built-in recommenders: microseconds per request, single and batched.

The batch endpoint's target (50,000 events/s end to end) leaves each event about 20 us for
everything; the recommender's share should be a few microseconds. This measures
`recommend(request)` one call at a time and `recommend_batch(requests)` in batches, over
realistic sessions (histories of 1 to 20 tracks, first requests included, unsigned 64-bit
seeds as the service derives them), best of `--repeat`
runs. `indexed` and `i2i` are fitted on a synthetic log first.

    python scripts/bench_recommenders.py --world data/world

With `--candidates`, every model served from an `--artifact` is timed twice in the same run,
with `candidates: exact` (the whole catalog per request) and with its default candidate stage,
and the share of requests both answer alike is printed (docs/learned.md):

    python scripts/bench_recommenders.py --world data/world --name dssm --artifact dssm=DIR --candidates --no-single

`--param NAME:KEY=VALUE` serves NAME with a parameter other than its default (both variants).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # time this checkout's packages, not an installed copy's

from contracts.catalog import Catalog, CatalogError
from recommenders import registry
from recommenders.base import Recommender, Request
from recommenders.testing import make_events

DEFAULT_NAMES = ("random", "sticky_artist", "top_pop", "indexed", "i2i")


def sessions(catalog: Catalog, n: int, seed: int) -> list[Request]:
    """`n` requests from sessions of 1..20 plays that mostly stay near one artist."""
    rng = np.random.default_rng(seed)
    requests = []
    while len(requests) < n:
        length = int(rng.integers(1, 21))
        artist_tracks = catalog.tracks_of_artist(int(catalog.artist[rng.integers(catalog.n_tracks)]))
        plays = [int(rng.choice(artist_tracks)) if rng.random() < 0.5 else int(rng.integers(catalog.n_tracks)) for _ in range(length)]
        times = [1.0, *np.round(rng.random(length - 1), 2).tolist()]
        user = int(rng.integers(0, 10_000))
        for end in range(1, length + 1):
            seed = int(rng.integers(2**64, dtype=np.uint64))
            requests.append(Request(user, plays[end - 1], times[end - 1], tuple(plays[:end]), tuple(times[:end]), seed))
    return requests[:n]


def best_of(repeat: int, work: Callable[[], object]) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return min(timings)


def build(name: str, catalog: Catalog, events_users: int, artifact: Path | None = None, params: dict[str, object] | None = None) -> Recommender:
    if artifact is not None:
        return registry.make(name, catalog, params or {}, artifact)
    cls = registry.get_class(name)
    recommender = cls(catalog)
    if hasattr(recommender, "fit") and name != "top_pop":
        recommender.fit(make_events(catalog, users=events_users, sessions_per_user=5, session_length=10))  # type: ignore[attr-defined]
    return recommender


@click.command()
@click.option(
    "--world", type=click.Path(path_type=Path), default=Path("data/world"), show_default=True, help="World directory (python -m sim.world --out DIR)."
)
@click.option("--requests", "n_requests", type=click.IntRange(100), default=20_000, show_default=True, help="Requests per measurement.")
@click.option(
    "--batch", "batch_sizes", type=click.IntRange(1), multiple=True, default=(100, 1000, 10_000), show_default=True, help="Batch sizes to time."
)
@click.option("--repeat", type=click.IntRange(1, 20), default=5, show_default=True, help="Runs per figure; the best is reported.")
@click.option("--name", "names", multiple=True, default=DEFAULT_NAMES, show_default=True, help="Recommenders to measure.")
@click.option("--artifact", "artifacts", multiple=True, metavar="NAME=DIR", help="Serve NAME from a trained artifact instead of fitting it on a synthetic log.")
@click.option("--param", "raw_params", multiple=True, metavar="NAME:KEY=VALUE", help="A serving parameter of NAME (YAML value), e.g. bpr_knn:n_probe=48.")
@click.option("--candidates", is_flag=True, help="Also time each artifact-served model with `candidates: exact` and compare the answers.")
@click.option("--no-single", is_flag=True, help="Skip the one-request-at-a-time timing (slow for models that score the whole catalog).")
def main(
    world: Path,
    n_requests: int,
    batch_sizes: tuple[int, ...],
    repeat: int,
    names: tuple[str, ...],
    artifacts: tuple[str, ...],
    raw_params: tuple[str, ...],
    candidates: bool,
    no_single: bool,
) -> None:
    """Time recommend() and recommend_batch() per request for each recommender."""
    bad = [item for item in artifacts if "=" not in item]
    if bad:
        raise click.ClickException(f"--artifact {bad[0]!r} must look like NAME=DIR")
    bad = [item for item in raw_params if ":" not in item.partition("=")[0] or "=" not in item]
    if bad:
        raise click.ClickException(f"--param {bad[0]!r} must look like NAME:KEY=VALUE")
    served_params: dict[str, dict[str, object]] = {}
    for item in raw_params:
        target, _, value = item.partition("=")
        name, _, key = target.partition(":")
        served_params.setdefault(name, {})[key] = yaml.safe_load(value)
    trained = {name: Path(directory) for name, _, directory in (item.partition("=") for item in artifacts)}
    try:
        catalog = Catalog(world)
    except CatalogError as error:
        raise click.ClickException(str(error)) from None
    requests = sessions(catalog, n_requests, seed=0)
    build_requests = best_of(repeat, lambda: [Request(r.user, r.track, r.time, r.history, r.times, r.seed) for r in requests])
    click.echo(f"{catalog}; {n_requests} requests, mean history {np.mean([len(r.history) for r in requests]):.1f}")
    click.echo(f"building the Request objects alone: {build_requests / n_requests * 1e6:.2f} us/request; load average {os.getloadavg()[0]:.2f}")
    header = f"{'recommender':<22}{'single us':>11}" + "".join(f"{f'batch {b} us':>17}" for b in batch_sizes) + f"{'events/s (best)':>18}"
    click.echo(header)
    for name in names:
        given = served_params.get(name, {})
        variants: list[tuple[str, dict[str, object]]] = [(name, given)]
        if candidates and name in trained:
            variants = [(f"{name} (exact)", {**given, "candidates": "exact"}), (f"{name} (candidates)", given)]
        answers: list[list[int]] = []
        for label, params in variants:
            try:
                recommender = build(name, catalog, events_users=2000, artifact=trained.get(name), params=params)
            except (registry.RegistryError, ValueError, FileNotFoundError) as error:
                click.echo(f"{label:<22}skipped: {error}")
                break
            recommender.recommend_batch(requests[:100])  # warm the caches (pools are built on first use)
            single = float("inf") if no_single else best_of(repeat, lambda r=recommender: [r.recommend(q) for q in requests]) / n_requests
            row = f"{label:<22}{'-' if no_single else f'{single * 1e6:.2f}':>11}"
            best = single
            for size in batch_sizes:
                chunks = [requests[i : i + size] for i in range(0, n_requests, size)]
                per_request = best_of(repeat, lambda r=recommender, c=chunks: [r.recommend_batch(chunk) for chunk in c]) / n_requests
                best = min(best, per_request)
                row += f"{per_request * 1e6:>17.2f}"
            click.echo(row + f"{1 / best:>18,.0f}")
            if len(variants) > 1:
                answers.append([answer.track for answer in recommender.recommend_batch(requests)])
        if len(answers) == 2:
            same = float(np.mean(np.asarray(answers[0]) == np.asarray(answers[1])))
            click.echo(f"{name}: {same:.2%} of {n_requests} answers equal to exact scoring; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
