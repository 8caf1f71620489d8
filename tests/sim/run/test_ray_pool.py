"""The warm shard pool on a running cluster (2 CPUs, loopback, started and stopped by
scripts/ray.sh): run after run, cold or warm, the process pool's log; stale code refused.

Every command runs as its own process with a time limit, as a user would run it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from sim.run.ray_pool import code_fingerprint

pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[3]
COMMAND_S = 180  # limit per command: a run here takes seconds; a hang fails the test instead of stalling it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid` (Ray's raylet, GCS, workers), read from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.fixture(scope="module")
def cluster(small_world_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A 2-CPU cluster on loopback with the pool started (the world loaded); stopped after the
    module, and checked to leave no Ray process behind. Yields the environment to run commands in."""
    directory = tmp_path_factory.mktemp("ray")
    env = {**os.environ, "BOTIFY_RAY_PORT": str(_free_port()), "BOTIFY_RAY_CPUS": "2", "BOTIFY_RAY_DIR": str(directory),
           "PYTHON": sys.executable, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token"}
    env["ADDRESS"] = f"127.0.0.1:{env['BOTIFY_RAY_PORT']}"
    script = str(REPO / "scripts" / "ray.sh")
    started = subprocess.run([script, "start", "--world", str(small_world_dir)], env=env, capture_output=True, text=True, timeout=COMMAND_S)
    pidfile = directory / f"ray-{env['BOTIFY_RAY_PORT']}.pid"
    owner = int(pidfile.read_text()) if pidfile.is_file() else None
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert "2 worker(s)" in started.stdout and "world" in started.stdout
        yield env
    finally:
        ray_processes = _descendants(owner) if owner is not None else set()
        stopped = subprocess.run([script, "stop"], env=env, capture_output=True, text=True, timeout=COMMAND_S)
        assert stopped.returncode == 0 and "ray: stopped" in stopped.stdout, stopped.stdout + stopped.stderr
        left = [pid for pid in ray_processes | ({owner} if owner else set()) if _alive(pid)]
        assert len(ray_processes) >= 3 and not left, f"Ray processes left running: {left}"
        assert not Path(f"/tmp/botify-ray-{env['BOTIFY_RAY_PORT']}").exists()  # its session files removed too


def _sim_run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sim.run", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=COMMAND_S)


def _events(log: Path) -> list[tuple[object, ...]]:
    """Every event but its latency, in a total order: instant skips give a session several events
    in one millisecond, whose order DuckDB's sort leaves open."""
    with duckdb.connect(str(log), read_only=True) as connection:
        return sorted(connection.execute("SELECT * EXCLUDE (latency) FROM events").fetchall(), key=repr)


def test_warm_and_cold_pool_runs_write_the_process_run_s_log(cluster: dict[str, str], small_world_dir: Path, tmp_path: Path) -> None:
    base = ["--episodes", "150", "--world", str(small_world_dir), "--recommender", "local:sticky_artist", "--quiet", "--seed", "2",
            "--days", "2"]

    def run(name: str, *executor: str) -> tuple[list[tuple[object, ...]], str]:
        log = tmp_path / f"{name}.duckdb"
        result = _sim_run(cluster, *base, "--log", str(log), "multi", "--processes", "2", *executor)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "300 sessions" in result.stdout
        return _events(log), result.stderr

    expected, _ = run("process", "--executor", "process")
    ray = ("--executor", "ray", "--address", cluster["ADDRESS"])
    warm, said = run("warm", *ray)  # the pool that ray.sh started, its world loaded
    assert "ran on the warm shard workers" in said
    stopped = _sim_run(cluster, "ray-pool", "stop", "--address", cluster["ADDRESS"])
    assert stopped.returncode == 0 and "stopped 2 shard worker(s)" in stopped.stdout
    cold, said = run("cold", *ray)  # no pool: this run starts it
    assert "started 2 shard worker(s)" in said
    warm_again, said = run("warm_again", *ray)
    assert "ran on the warm shard workers" in said
    assert len(expected) > 1000
    assert warm == expected and cold == expected and warm_again == expected
    status = _sim_run(cluster, "ray-pool", "status", "--address", cluster["ADDRESS"])
    lines = status.stdout.splitlines()
    assert status.returncode == 0 and len(lines) == 2, status.stdout + status.stderr
    assert all(": current," in line and "2 shard run(s)" in line and str(small_world_dir) in line for line in lines)


def test_a_pool_of_other_code_is_refused_then_replaced(cluster: dict[str, str], small_world_dir: Path) -> None:
    # A worker named for another code fingerprint, as a pool started from an older checkout would be.
    stale = _sim_run_python(cluster, (
        "import ray; from sim.run.shards import ray_session; from sim.run.ray_pool import NAMESPACE, ShardWorker\n"
        f"with ray_session({cluster['ADDRESS']!r}):\n"
        "    w = ray.remote(ShardWorker).options(name='shard-000000000000-0', namespace=NAMESPACE, lifetime='detached', num_cpus=0).remote()\n"
        "    ray.get(w.describe.remote())\n"
    ))
    assert stale.returncode == 0, stale.stderr
    args = ["--episodes", "20", "--world", str(small_world_dir), "--recommender", "local:random", "--quiet",
            "multi", "--processes", "3", "--executor", "ray", "--address", cluster["ADDRESS"]]  # 3 shards on 2 CPUs: workers take turns
    refused = _sim_run(cluster, *args)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "runs other code (1 worker(s) of code 000000000000" in refused.stderr and "ray-pool start" in refused.stderr
    replaced = _sim_run(cluster, "--world", str(small_world_dir), "ray-pool", "start", "--address", cluster["ADDRESS"], "--workers", "2")
    assert replaced.returncode == 0 and "stopped 1 worker(s) of other code" in replaced.stdout, replaced.stdout + replaced.stderr
    after = _sim_run(cluster, *args)
    assert after.returncode == 0 and "20 sessions" in after.stdout, after.stdout + after.stderr


def _sim_run_python(env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=COMMAND_S)


def test_the_code_fingerprint_follows_every_source_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "fingerprinted"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "schema.sql").write_text("CREATE TABLE t (x INT);\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = code_fingerprint(["fingerprinted"])
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "x.pyc").write_bytes(b"compiled")
    assert code_fingerprint(["fingerprinted"]) == before  # build outputs do not count
    (package / "sub" / "schema.sql").write_text("CREATE TABLE t (x BIGINT);\n")
    assert code_fingerprint(["fingerprinted"]) != before
    assert code_fingerprint() == code_fingerprint()


def test_pool_commands_without_a_cluster_are_one_clear_line() -> None:
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    down = _sim_run(env, "ray-pool", "status", "--address", "127.0.0.1:9")
    assert down.returncode == 1 and "no Ray cluster answers at 127.0.0.1:9" in down.stderr and "Traceback" not in down.stderr
    stray = _sim_run(env, "--episodes", "10", "--recommender", "local:random", "multi", "--no-pool")
    assert stray.returncode == 2 and "--no-pool is for --executor ray --address" in stray.stderr
