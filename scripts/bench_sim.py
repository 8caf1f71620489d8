"""Benchmark the simulator: env steps/s (single and vectorised) and world generation time/memory.

    python scripts/bench_sim.py                  # default world only
    python scripts/bench_sim.py --large          # also the 10^6-track, 10^6-listener world

Steps are driven by a trivial policy (uniformly random tracks). Generation runs in a child
process so that its peak resident memory (ru_maxrss) is measured on its own.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from sim.env import SessionEnv
from sim.vector_env import SessionVectorEnv
from sim.world import World

COURSE_STEPS_PER_S = 12_000  # the course simulator's in-process loop on a 2-core machine
TARGET_VECTOR_STEPS_PER_S = 1_000_000


def generate(config: Path, out: Path) -> dict[str, float]:
    """Generate a world in a child process; return wall seconds and the child's peak RSS in MiB."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sim.world", "--config", str(config), "--out", str(out), "--force", "--quiet"], check=True)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"seconds": seconds, "peak_rss_mib": max(peak, before) / 1024, "disk_mib": size / 2**20}


def single_env_rate(world: World, steps: int) -> float:
    env = SessionEnv(world)
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(world.n_tracks, size=steps).tolist()
    started = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - started)


def vector_env_rate(world: World, num_envs: int, iterations: int) -> float:
    env = SessionVectorEnv(num_envs, world)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = [rng.integers(world.n_tracks, size=num_envs) for _ in range(iterations)]
    started = time.perf_counter()
    for batch in actions:
        env.step(batch)
    return num_envs * iterations / (time.perf_counter() - started)


@click.command()
@click.option("--large", is_flag=True, help="Also generate the 10^6 world (config/world-1m.yml): minutes and ~2 GB of disk.")
@click.option("--workdir", type=click.Path(path_type=Path), default=None, help="Where to write the worlds (default: a temp dir).")
def main(large: bool, workdir: Path | None) -> None:
    """Measure steps/s of the environments and the cost of generating worlds."""
    root = workdir or Path(tempfile.mkdtemp(prefix="bench-sim-"))
    results: dict[str, object] = {}
    results["generate_default"] = generate(Path("config/world.yml"), root / "default")
    world = World(root / "default")
    results["single_env_steps_per_s"] = single_env_rate(world, 30_000)
    results["single_vs_course"] = results["single_env_steps_per_s"] / COURSE_STEPS_PER_S
    for num_envs in (4_096, 65_536):
        results[f"vector_env_{num_envs}_steps_per_s"] = vector_env_rate(world, num_envs, max(20, 2_000_000 // num_envs))
    best = max(v for k, v in results.items() if k.startswith("vector_env"))
    results["vector_vs_target"] = best / TARGET_VECTOR_STEPS_PER_S
    if large:
        results["generate_1m"] = generate(Path("config/world-1m.yml"), root / "large")
    click.echo(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
