"""Benchmark of the simulation at scale: the loop, HTTP, replicas, Ray and a 10^5-arrival day.

    python scripts/bench_scale.py [--parts loop,http,replicas,ray,day] [--world data/world] [--world-1m data/world-1m]

Each part measures both sides in the same run and prints them side by side with the course's
figure where it has one:

- loop: `local:sticky_artist` in process, 2,000 and 20,000 arrivals: the per-session SimPy loop
  (the previous scheduler, kept in tests/sim/run/simpy_timeline.py) against the window
  scheduler; the time spent in the client (botify's `Service.serve`; `serve_batch`, the columns, for the window scheduler) against the loop's own;
  the dummy client (no service: the loop alone) and the vectorised listener model
  (`SessionVectorEnv`), the speed the loop is measured against. Course loop: 12,000 steps/s.
- http: the same against `botify serve` with one granian worker, and POST /batch's own rate
  (`scripts/bench_botify.py`'s batch client), the ceiling of any loop over HTTP. Course: 18-24 s
  for 2,000 arrivals.
- replicas: 20,000 arrivals against one service, then against two replicas (`--url`).
- ray: `multi --processes 2` with the process executor and with Ray (a local cluster started by
  the run; a running one, scripts/ray.sh, reached with --address: its first run starts the warm
  shard workers, the second finds them), 2,000 and 100,000 arrivals, end to end and simulating.
- day: 10^5 arrivals on the 10^6-listener world (`config/world-1m.yml`) through botify
  (sticky_artist, one worker, then two replicas).

Timings on a shared machine drift; the script prints the load average with every part.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))
from bench_botify import batch_client, free_port  # noqa: E402
from demo import Service, _experiments, use_checkout  # noqa: E402

COURSE_LOOP_STEPS_S = 12_000
COURSE_SINGLE_S = (18.0, 24.0)
SUMMARY = re.compile(r"wall time ([\d.]+) s, ([\d,]+) steps/s")


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _timed_day(kind: type, world: object, config: object, client: object, episodes: int) -> dict[str, float]:
    """One day of `episodes` arrivals with the scheduler `kind`; the client's share timed apart."""
    spent = [0.0]
    # The window scheduler sends a columnar client batches as columns (`serve_batch`), other clients `Item`s.
    method = "serve_batch" if kind.__name__ == "Timeline" and hasattr(client, "serve_batch") else "serve"
    inner = getattr(client, method)

    def serve(items: object) -> object:
        started = time.perf_counter()
        answers = inner(items)
        spent[0] += time.perf_counter() - started
        return answers

    setattr(client, method, serve)
    timeline = kind(world, config, client, 0)
    started = time.perf_counter()
    records = timeline.run_day(1, episodes)
    wall = time.perf_counter() - started
    client.close()  # type: ignore[attr-defined]
    steps = sum(r.tracks for r in records)
    return {"steps": steps, "wall_s": round(wall, 3), "steps_per_s": round(steps / wall), "client_s": round(spent[0], 3),
            "loop_steps_per_s": round(steps / max(wall - spent[0], 1e-9))}


def part_loop(world_dir: Path, episodes: list[int], make_client: Callable[..., object], label: str) -> dict[str, object]:
    from sim.config import env_config_from_mapping
    from sim.run.timeline import Timeline
    from sim.world import World
    from tests.sim.run.simpy_timeline import SimpyTimeline

    config = env_config_from_mapping({"world": str(world_dir)})
    world = World(world_dir)
    out: dict[str, object] = {"load_average": load()}
    for n in episodes:
        row = {}
        for name, kind in (("simpy_loop", SimpyTimeline), ("window_loop", Timeline)):
            row[name] = _timed_day(kind, world, config, make_client(config, world), n)
        row["speedup"] = round(row["simpy_loop"]["wall_s"] / row["window_loop"]["wall_s"], 2)
        out[f"{label}_{n}"] = row
        print(json.dumps({f"{label}_{n}": row}), flush=True)
    return out


def vector_env_rate(world_dir: Path, n: int = 4096, steps: int = 200) -> float:
    from sim.vector_env import SessionVectorEnv

    env = SessionVectorEnv(n, world_dir)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.integers(env.world.n_tracks, size=(steps, n))
    started = time.perf_counter()
    for t in range(steps):
        env.step(actions[t])
    return round(n * steps / (time.perf_counter() - started))


def run_command(args: list[str], env: dict[str, str] | None = None) -> dict[str, object]:
    """`python -m sim.run ARGS`: its time end to end, its own simulating time and rate, the load average after it."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "sim.run", *args], check=True, capture_output=True, text=True, cwd=REPO, env=env)
    total = time.perf_counter() - started
    match = SUMMARY.search(result.stdout)
    assert match, result.stdout + result.stderr
    return {"command_s": round(total, 2), "simulation_s": float(match.group(1)), "steps_per_s": float(match.group(2).replace(",", "")),
            "load_average": load()}


@click.command()
@click.option("--parts", default="loop,http,replicas,ray,day", show_default=True)
@click.option("--world", "world_dir", type=click.Path(path_type=Path), default=Path("data/world"), show_default=True)
@click.option("--world-1m", "world_1m", type=click.Path(path_type=Path), default=Path("data/world-1m"), show_default=True)
@click.option("--day-episodes", type=int, default=100_000, show_default=True)
@click.option("--ray-pairs", type=click.IntRange(min=0), default=3, show_default=True, help="ray: extra alternating pairs of warm Ray and the process pool.")
def main(parts: str, world_dir: Path, world_1m: Path, day_episodes: int, ray_pairs: int) -> None:
    """Run the chosen parts and print every figure as JSON lines, then all of them."""
    use_checkout()
    chosen = parts.split(",")
    results: dict[str, object] = {"cpus": os.cpu_count()}
    from sim.run.clients import DummyClient, RemoteClient
    from sim.run.shards import ClientSpec

    if "loop" in chosen:
        results["vector_env_steps_per_s"] = vector_env_rate(world_dir)
        print(json.dumps({"vector_env_steps_per_s": results["vector_env_steps_per_s"]}), flush=True)
        results["loop_local_sticky_artist"] = part_loop(world_dir, [2000, 20000], lambda c, w: ClientSpec("local", "sticky_artist").build(c, 0, w), "local")
        results["loop_dummy"] = part_loop(world_dir, [20000], lambda c, w: DummyClient(w.n_tracks, 0), "dummy")
        results["course_loop_steps_per_s"] = COURSE_LOOP_STEPS_S
    with tempfile.TemporaryDirectory() as tmp:
        experiments = _experiments(Path(tmp) / "experiments.yml", "bench", [{"recommender": "sticky_artist"}, {"recommender": "sticky_artist"}])
        if "http" in chosen:
            port = free_port()
            with Service(world_dir, experiments, Path(tmp) / "http.duckdb", port, workers=1):
                results["batch_endpoint"] = {"load_average": load(), **batch_client(port, 1000, 5.0, concurrency=1)}
                print(json.dumps({"batch_endpoint": results["batch_endpoint"]}), flush=True)

                def remote(config: object, world: object) -> object:
                    return RemoteClient(config.service.model_copy(update={"port": port}))  # type: ignore[attr-defined]

                results["http_1_worker"] = part_loop(world_dir, [2000, 20000], remote, "http")
            results["course_single_s"] = COURSE_SINGLE_S
        if "replicas" in chosen:
            ports = [free_port(), free_port()]
            log = Path(tmp) / "replicas.duckdb"
            with Service(world_dir, experiments, Path(tmp) / "alone.duckdb", ports[0], workers=1):
                one = run_command(["--episodes", "20000", "--quiet", "--world", str(world_dir), "--port", str(ports[0])])
            with Service(world_dir, experiments, log, ports[0], workers=1), Service(world_dir, experiments, log, ports[1], workers=1):
                two = run_command(["--episodes", "20000", "--quiet", "--world", str(world_dir), "--url", ",".join(f"127.0.0.1:{p}" for p in ports)])
            results["replicas_20000"] = {"load_average": load(), "one_service": one, "two_replicas": two}
            print(json.dumps({"replicas_20000": results["replicas_20000"]}), flush=True)
        if "ray" in chosen:
            results["ray"] = part_ray(world_dir, Path(tmp), ray_pairs)
        if "day" in chosen:
            if not (world_1m / "public").is_dir():
                sys.exit(f"no world at {world_1m}: python -m sim.world --config config/world-1m.yml --out {world_1m}")
            ports = [free_port(), free_port()]
            args = ["--episodes", str(day_episodes), "--quiet", "--world", str(world_1m)]
            started = time.perf_counter()
            with Service(world_1m, experiments, Path(tmp) / "day.duckdb", ports[0], workers=1):
                startup = time.perf_counter() - started
                one = run_command([*args, "--port", str(ports[0])])
            log = Path(tmp) / "day2.duckdb"
            with Service(world_1m, experiments, log, ports[0], workers=1), Service(world_1m, experiments, log, ports[1], workers=1):
                two = run_command([*args, "--url", ",".join(f"127.0.0.1:{p}" for p in ports)])
            results["day_1m_world"] = {"load_average": load(), "episodes": day_episodes, "service_startup_s": round(startup, 1),
                                       "one_worker": one, "two_replicas": two, "target_s": 30}
            print(json.dumps({"day_1m_world": results["day_1m_world"]}), flush=True)
    print(json.dumps(results, indent=1))


def part_ray(world_dir: Path, tmp: Path, ray_pairs: int) -> dict[str, object]:
    """Process pool against Ray, end to end, for a small and a large day (2 shards each): Ray on a
    cluster started by the run, and on a running cluster (scripts/ray.sh, loopback, 2 CPUs) with
    its shard pool stopped (the first run starts the workers: cold) and then kept (warm). The
    process pool runs first and last; the ratios are over the mean of its two runs. Then
    `ray_pairs` alternating pairs of warm Ray and the process pool, each pair's ratio."""
    out: dict[str, object] = {"load_average": load()}
    port = free_port()
    env = {**os.environ, "BOTIFY_RAY_PORT": str(port), "BOTIFY_RAY_CPUS": "2", "BOTIFY_RAY_DIR": str(tmp / "ray"), "PYTHON": sys.executable}
    script = [str(REPO / "scripts" / "ray.sh")]
    address = f"127.0.0.1:{port}"
    subprocess.run([*script, "start"], env=env, check=True, capture_output=True, timeout=300, cwd=REPO)
    try:
        for n in (2000, 100_000):
            base = ["--episodes", str(n), "--quiet", "--world", str(world_dir), "--recommender", "local:sticky_artist", "multi", "--processes", "2"]
            ray = [*base, "--executor", "ray", "--address", address]
            row: dict[str, object] = {"process": run_command([*base, "--executor", "process"])}
            subprocess.run([sys.executable, "-m", "sim.run", "ray-pool", "stop", "--address", address], env=env, check=True, capture_output=True, cwd=REPO)
            row["ray_running_cold"] = run_command(ray, env)
            row["ray_running_warm"] = run_command(ray, env)
            row["ray_local_cluster"] = run_command([*base, "--executor", "ray"])
            row["process_again"] = run_command([*base, "--executor", "process"])
            process_s = (row["process"]["command_s"] + row["process_again"]["command_s"]) / 2  # type: ignore[index]
            process_sim = (row["process"]["simulation_s"] + row["process_again"]["simulation_s"]) / 2  # type: ignore[index]
            for name in ("ray_local_cluster", "ray_running_cold", "ray_running_warm"):
                row[f"{name}_over_process"] = {
                    "end_to_end": round(row[name]["command_s"] / process_s, 2),  # type: ignore[index]
                    "simulating": round(row[name]["simulation_s"] / process_sim, 2),  # type: ignore[index]
                }
            # On a shared machine one run's time moves with everyone else's load: alternate more
            # pairs of the two that the target compares, and give each pair's ratio.
            pairs = [(run_command(ray, env), run_command([*base, "--executor", "process"])) for _ in range(ray_pairs)]
            row["warm_process_pairs"] = [{"warm": warm, "process": process} for warm, process in pairs]
            for key in ("command_s", "simulation_s"):
                ratios = sorted(warm[key] / process[key] for warm, process in pairs)  # type: ignore[operator]
                if ratios:
                    row[f"pairs_warm_over_process_{key}"] = {"median": round(float(np.median(ratios)), 2), "min": round(ratios[0], 2),
                                                             "max": round(ratios[-1], 2)}
            out[f"arrivals_{n}"] = row
            print(json.dumps({f"ray_{n}": row}), flush=True)
    finally:
        subprocess.run([*script, "stop"], env=env, capture_output=True, timeout=300, cwd=REPO)
    return out


if __name__ == "__main__":
    main()
