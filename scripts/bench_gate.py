"""Benchmark of the plugin gate: wall time end to end, and the paired interval against an A/B's.

Installs the example plugin (examples/botify-plugin-example) into a scratch directory (never into
the environment), then:

1. times `python -m sim.gate recent_artist_mix --world W` end to end (a fresh interpreter, both
   arms simulated, best of `--repeat`): the target is under 10 s at 2,000 listeners;
2. runs both arms in process and, per metric, compares the paired interval's width with that of
   the A/B test the same listeners would give (each listener in the arm `contracts.assignment`
   hashes them to, with their simulated outcome under that arm: the replay is exact, so this is
   the A/B's own data): the target is a ratio of at least 3;
3. times `recommenders check recent_artist_mix --world W --quick` end to end: the target is under 5 s.

    python scripts/bench_gate.py --world data/world
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

PLUGIN = "recent_artist_mix"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "botify-plugin-example"


def timed(command: list[str], env: dict[str, str], repeat: int) -> float:
    """The best wall time of `command` over `repeat` runs; a failing run stops the benchmark."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        best = min(best, time.perf_counter() - started)
        if result.returncode != 0:
            raise click.ClickException(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return best


@click.command()
@click.option("--world", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("data/world"), show_default=True)
@click.option("--episodes", type=int, default=2000, show_default=True)
@click.option("--baseline", default="sticky_artist", show_default=True)
@click.option("--repeat", type=int, default=3, show_default=True)
def main(world: Path, episodes: int, baseline: str, repeat: int) -> None:
    """Print the gate's and the quick check's wall times and the paired / A/B interval widths."""
    from abtest.paired import paired, unpaired
    from contracts.assignment import assign
    from sim.gate import METRICS, load_config, run_arm

    click.echo(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-gate-") as scratch:
        site = Path(scratch) / "site"
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
        source = Path(scratch) / "source"  # pip builds in the source tree: build a copy, keep examples/ clean
        shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        subprocess.run([*pip, "--target", str(site), str(source)], check=True, capture_output=True, timeout=600)
        env = {**os.environ, "PYTHONPATH": str(site)}
        gate = [sys.executable, "-m", "sim.gate", PLUGIN, "--world", str(world), "--episodes", str(episodes), "--baseline", baseline]
        check = [sys.executable, "-m", "recommenders", "check", PLUGIN, "--world", str(world), "--quick"]
        gate_s = timed(gate, env, repeat)
        check_s = timed(check, env, repeat)

        sys.path.insert(0, str(site))
        config = load_config(Path("config/env.yml"), world)
        base = run_arm(config, 0, episodes, 1, baseline, {}, None, None, Path(scratch) / "baseline.duckdb")
        plugin = run_arm(config, 0, episodes, 1, PLUGIN, {}, None, baseline, Path(scratch) / "plugin.duckdb")

    arm = np.array([assign("gate", int(user), 2) for user in base.users])
    click.echo(f"gate end to end ({episodes} arrivals, {len(base.users)} listeners), best of {repeat}: {gate_s:.2f} s (target < 10 s)")
    click.echo(f"recommenders check {PLUGIN} --quick, best of {repeat}: {check_s:.2f} s (target < 5 s)")
    click.echo(f"{'metric':<24} {'paired CI':>20} {'A/B CI':>20} {'width ratio':>12}")
    for name in METRICS:
        pair = paired(base.values[name], plugin.values[name])
        ab = unpaired(base.values[name][arm == 0], plugin.values[name][arm == 1])
        width, ab_width = pair.upper - pair.lower, float(ab.upper) - float(ab.lower)
        ratio = f"{ab_width / width:.1f}x" if width > 0 else "exact"
        click.echo(
            f"{name:<24} {100 * pair.lower:+8.2f}%..{100 * pair.upper:+7.2f}% {100 * float(ab.lower):+8.2f}%..{100 * float(ab.upper):+7.2f}% {ratio:>12}"
        )


if __name__ == "__main__":
    main()
