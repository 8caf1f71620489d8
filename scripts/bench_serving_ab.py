"""Batch serving time of the learned models in two checkouts, measured in turn: the before/after ratio on a busy machine.

On a shared machine the load moves by 2-3x within minutes, so two benchmark runs one after the
other compare the load as much as the code. This starts one worker process per checkout (each
imports its own checkout's packages and loads every model once), then asks them in turn for
one timing at a time: `recommend_batch` over `--requests` requests of `bench_recommenders.py`
in batches of each `--batch` size, for each model. After `--rounds` rounds each side's best is
reported, with the ratio.

    python scripts/bench_serving_ab.py --baseline ../before --world data/world --artifacts data/demo/artifacts

`--param NAME:KEY=VALUE` adds a variant NAME[KEY=VALUE] served by this checkout only (e.g.
`dssm:user_tower=int8`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

HERE = Path(__file__).resolve().parents[1]
NAMES = ("dssm", "sasrec", "hstu", "content", "bpr_knn")


def worker(world: Path, artifacts: Path, n_requests: int, variants: list[str]) -> None:
    """Load the variants from this process's checkout, then answer "KEY SIZE" lines with seconds per request."""
    import time

    import yaml

    sys.path[:0] = [os.getcwd(), os.path.join(os.getcwd(), "scripts")]  # the worker's own checkout (its cwd), not this script's
    from bench_recommenders import sessions  # type: ignore[import-not-found]

    import recommenders
    from contracts.catalog import Catalog
    from recommenders import registry

    catalog = Catalog(world)
    requests = sessions(catalog, n_requests, seed=0)
    models = {}
    for variant in variants:
        name, _, param = variant.partition(":")
        key, _, value = param.partition("=")
        models[variant] = registry.make(name, catalog, {key: yaml.safe_load(value)} if param else {}, artifacts / name)
        models[variant].recommend_batch(requests[:100])
    click.echo(f"ready {Path(recommenders.__file__).resolve().parents[1]}")
    for line in sys.stdin:
        variant, size = line.split()
        chunks = [requests[i : i + int(size)] for i in range(0, n_requests, int(size))]
        started = time.perf_counter()
        for chunk in chunks:
            models[variant].recommend_batch(chunk)
        click.echo(f"{(time.perf_counter() - started) / n_requests}")


@click.command()
@click.option("--baseline", type=click.Path(exists=True, file_okay=False, path_type=Path), help="The other checkout (e.g. `git worktree add ../before main`).")
@click.option("--world", type=click.Path(path_type=Path), default=Path("data/world"), show_default=True, help="World directory.")
@click.option("--artifacts", type=click.Path(path_type=Path), default=Path("data/demo/artifacts"), show_default=True, help="Directory with one artifact directory per model.")
@click.option("--name", "names", multiple=True, default=NAMES, show_default=True, help="Models to time.")
@click.option("--param", "params", multiple=True, metavar="NAME:KEY=VALUE", help="A variant served by this checkout only.")
@click.option("--batch", "batches", type=click.IntRange(1), multiple=True, default=(100, 1000), show_default=True, help="Batch sizes.")
@click.option("--requests", "n_requests", type=click.IntRange(100), default=3000, show_default=True, help="Requests per timing.")
@click.option("--rounds", type=click.IntRange(1), default=8, show_default=True, help="Timings per side; the best is reported.")
@click.option("--worker", "worker_variants", hidden=True, multiple=True)
def main(
    baseline: Path | None, world: Path, artifacts: Path, names: tuple[str, ...], params: tuple[str, ...], batches: tuple[int, ...],
    n_requests: int, rounds: int, worker_variants: tuple[str, ...],
) -> None:
    """Time batch serving in this checkout and in --baseline, in turn, and print each side's best and the ratio."""
    world, artifacts = world.resolve(), artifacts.resolve()
    if worker_variants:
        worker(world, artifacts, n_requests, list(worker_variants))
        return
    if baseline is None:
        raise click.ClickException("--baseline DIR is required: the checkout to compare this one with")
    bad = [item for item in params if ":" not in item or "=" not in item]
    if bad:
        raise click.ClickException(f"--param {bad[0]!r} must look like NAME:KEY=VALUE")
    missing = [name for name in {*names, *(item.partition(":")[0] for item in params)} if not (artifacts / name).is_dir()]
    if missing:
        raise click.ClickException(f"no artifact directory {artifacts / missing[0]}")
    sides = {"before": (baseline.resolve(), list(names)), "after": (HERE, [*names, *params])}
    workers = {}
    for side, (tree, variants) in sides.items():
        command = [sys.executable, str(tree / "scripts" / "bench_serving_ab.py"), "--world", str(world), "--artifacts", str(artifacts), "--requests", str(n_requests)]
        command += [argument for variant in variants for argument in ("--worker", variant)]
        if not (tree / "scripts" / "bench_serving_ab.py").exists():  # an older checkout: run this script's worker on its packages
            command[1] = str(Path(__file__).resolve())
        env = {**os.environ, "PYTHONPATH": str(tree)}
        workers[side] = subprocess.Popen(command, cwd=tree, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        if workers[side].stdout is None or workers[side].stdout.readline().strip() != f"ready {tree}":
            raise click.ClickException(f"the {side} worker did not start on the packages of {tree}")
    loads, best = [os.getloadavg()[0]], {}
    for _ in range(rounds):
        for size in batches:
            for variant in [*names, *params]:
                for side, process in workers.items():
                    if variant not in sides[side][1]:
                        continue
                    assert process.stdin is not None and process.stdout is not None
                    process.stdin.write(f"{variant} {size}\n")
                    process.stdin.flush()
                    seconds = float(process.stdout.readline())
                    best[variant, size, side] = min(seconds, best.get((variant, size, side), float("inf")))
        loads.append(os.getloadavg()[0])
    for process in workers.values():
        assert process.stdin is not None
        process.stdin.close()
        process.wait()
    click.echo(f"load average {min(loads):.1f}-{max(loads):.1f}; {rounds} rounds in turn, best per side; us per request (events/s)")
    click.echo(f"{'model':<24}{'batch':>6}{'before':>20}{'after':>20}{'ratio':>7}")
    for variant in [*names, *params]:
        for size in batches:
            after = best[variant, size, "after"]
            before = best.get((variant, size, "before"))
            shown = "-" if before is None else f"{before * 1e6:.1f} ({1 / before:,.0f})"
            ratio = "-" if before is None else f"{before / after:.2f}"
            click.echo(f"{variant:<24}{size:>6}{shown:>20}{f'{after * 1e6:.1f} ({1 / after:,.0f})':>20}{ratio:>7}")


if __name__ == "__main__":
    main()
