"""The course's loop end to end on the default world: the README's first command runs this.

1. generate the default world (if missing);
2. day 1: start botify on loopback with the cold-start experiment and simulate a day;
3. train every trainable recommender on day 1's log;
4. day 2: redeploy with an experiment whose control is `sticky_artist` and whose treatments
   are the trained recommenders, simulate the next day;
5. replay every day-2 listener under the control and under `dssm` (the truth beside the log);
6. `abtest report` of every treatment against the control (T1's with its true effect); stop the service.

Every step is one of the project's own commands, echoed before it runs, so the demo doubles
as a walkthrough.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import urllib3
import yaml
from urllib3.exceptions import HTTPError

REPO = Path(__file__).resolve().parents[1]


def module(name: str) -> list[str]:
    """The command line that runs package `name` of this checkout: `python -m NAME` with the checkout
    first on PYTHONPATH, so the demo runs the code it sits beside, never an installed script."""
    return [sys.executable, "-m", name]


def use_checkout() -> None:
    """Put this checkout first on the PYTHONPATH that the commands started from here inherit."""
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])

TUNED = REPO / "config" / "tuned"  # configs found by `recommenders tune` (docs/learned.md, "Tuned defaults")
TRAINED: dict[str, dict[str, object]] = {  # registry name -> training config (write-up defaults where empty)
    "dssm": yaml.safe_load((TUNED / "dssm.train.yml").read_text()),
    "bpr_knn": {},
    "tags": {"epochs": 4, "max_train_tracks": 6000},  # a quick tag model: seconds, not minutes, on 2 cores
    "content": {"epochs": 15},
    "sasrec": {},
    "hstu": {},
}
SERVING: dict[str, dict[str, object]] = {  # registry name -> serving parameters of its treatment (defaults where missing)
    "dssm": yaml.safe_load((TUNED / "dssm.serving.yml").read_text()),
}


def _echo_run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess:
    click.secho("$ " + " ".join(command), fg="cyan", err=True)
    return subprocess.run(command, check=True, **kwargs)  # type: ignore[call-overload]


def _wait_alive(port: int, process: subprocess.Popen, timeout_s: float = 60.0) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if process.poll() is not None:
            raise click.ClickException(f"botify exited with status {process.returncode} during start-up (see its output above)")
        try:
            if urllib3.request("GET", f"http://127.0.0.1:{port}/", timeout=1.0, retries=False).status == 200:
                return time.perf_counter() - started
        except HTTPError:
            time.sleep(0.1)
    raise click.ClickException(f"botify did not answer on port {port} within {timeout_s:.0f} s")


class Service:
    """`botify serve` in a child process, stopped with SIGTERM (which flushes the event log)."""

    def __init__(self, world: Path, experiments: Path, log: Path, port: int, workers: int) -> None:
        self.command = [
            *module("botify"), "serve", "--world", str(world), "--experiments", str(experiments),
            "--log", str(log), "--port", str(port), "--workers", str(workers),
        ]
        if workers > 1:  # workers share listen history through Redis (scripts/redis.sh)
            self.command += ["--history", "redis"]
        self.port = port
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Service:
        click.secho("$ " + " ".join(self.command) + " &", fg="cyan", err=True)
        self.process = subprocess.Popen(self.command, start_new_session=True)
        seconds = _wait_alive(self.port, self.process)
        click.echo(f"botify is up on 127.0.0.1:{self.port} after {seconds:.1f} s", err=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _experiments(path: Path, name: str, treatments: list[dict[str, object]]) -> Path:
    path.write_text(yaml.safe_dump({"experiments": [{"name": name, "serving": True, "treatments": treatments}]}, sort_keys=False))
    return path


@click.command()
@click.option("--episodes", type=click.IntRange(min=10), default=2000, show_default=True, help="Listener arrivals per simulated day.")
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("data/demo"), show_default=True, help="Where the log, artifacts and reports go (replaced).")
@click.option("--world", type=click.Path(path_type=Path), default=Path("data/world"), show_default=True, help="World directory (generated when missing).")
@click.option("--port", type=int, default=5001, show_default=True)
@click.option("--workers", type=int, default=2, show_default=True, help="botify worker processes (more than one shares history through Redis).")
@click.option("--seed", type=int, default=0, show_default=True)
def main(episodes: int, workdir: Path, world: Path, port: int, workers: int, seed: int) -> None:
    """Run the whole loop: world, day 1 cold start, training, day 2 experiment, A/B reports."""
    started = time.perf_counter()
    use_checkout()
    python = sys.executable
    if not (world / "public").is_dir():
        _echo_run([python, "-m", "sim.world", "--out", str(world)])
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    log = workdir / "events.duckdb"
    if workers > 1:
        _echo_run(["scripts/redis.sh", "start"])
    simulate = [python, "-m", "sim.run", "--episodes", str(episodes), "--seed", str(seed), "--port", str(port), "--days", "1", "--quiet"]

    click.secho("\nday 1: cold start", bold=True)
    day1 = _experiments(workdir / "experiments-day1.yml", "cold_start", [{"recommender": "random"}, {"recommender": "sticky_artist"}, {"recommender": "top_pop"}])
    with Service(world, day1, log, port, workers):
        _echo_run(simulate + ["--start-day", "1"])

    click.secho("\ntraining on day 1's log", bold=True)
    artifacts = {}
    for name, config in TRAINED.items():
        out = workdir / "artifacts" / name
        extra = []
        if config:
            config_path = workdir / f"train-{name}.yml"
            config_path.write_text(yaml.safe_dump(config, sort_keys=False))
            extra = ["--config", str(config_path)]
        _echo_run([*module("recommenders"), "train", name, "--events", str(log), "--world", str(world), "--out", str(out),
                   "--tracking-uri", str(workdir / "mlruns"), *extra])
        artifacts[name] = out

    click.secho("\nday 2: sticky_artist against the trained recommenders", bold=True)
    treatments = [{"recommender": "sticky_artist"}] + [
        {"recommender": n, "artifact": str(p), **({"params": SERVING[n]} if n in SERVING else {})} for n, p in artifacts.items()
    ]
    day2 = _experiments(workdir / "experiments-day2.yml", "personalised", treatments)
    with Service(world, day2, log, port, workers):
        _echo_run(simulate + ["--start-day", "2"])

    click.secho("\nthe truth: every day-2 listener replayed under sticky_artist and under dssm", bold=True)
    # The replay serves everyone one arm at a time, so the control and T1 alone keep their indices.
    truth_arms = _experiments(workdir / "experiments-truth.yml", "personalised", treatments[:2])
    _echo_run([python, "-m", "sim.run", "--episodes", str(episodes), "--seed", str(seed), "--world", str(world), "--start-day", "2",
               "--days", "1", "--log", str(log), "--quiet", "truth", "--experiments", str(truth_arms)])

    click.secho("\nA/B reports", bold=True)
    reports = []
    for index, name in enumerate(artifacts, start=1):
        for fmt, suffix in (("markdown", "md"), ("html", "html")):
            out = workdir / f"report-T{index}-{name}.{suffix}"
            with out.open("w") as handle:
                _echo_run([*module("abtest"), "report", "--log", str(log), "--experiment", "personalised",
                           "--control", "0", "--treatment", str(index), "--format", fmt], stdout=handle)
            reports.append(out)
        click.echo((workdir / f"report-T{index}-{name}.md").read_text())
    if workers > 1:
        _echo_run(["scripts/redis.sh", "stop"])
    click.secho(f"\ndone in {time.perf_counter() - started:.0f} s", bold=True)
    click.echo(f"world:   {world}\nlog:     {log}\nreports: " + "\n         ".join(str(r) for r in reports))


if __name__ == "__main__":
    main()
