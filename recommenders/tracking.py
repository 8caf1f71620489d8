"""MLflow tracking of `recommenders train`, `evaluate` and `tune`: parameters, metrics, tables, artifacts.

A `Tracker` is one MLflow run, or nothing at all when tracking is off (`--no-track`). mlflow
is imported only when a run starts, so the commands start as fast without it. The store is a
local SQLite database by default (`mlruns/mlflow.db`, its artifacts beside it in
`mlruns/artifacts`; `mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db` shows it); a
URI with a scheme (`http://host:5000`, `sqlite:///...`, `postgresql://...`) names another store
or a tracking server. MLflow's plain-directory store is not used: MLflow 3 keeps it in
maintenance mode and refuses it unless told otherwise.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

DEFAULT_STORE = "mlruns"  # a directory: its SQLite database and artifacts
DATABASE = "mlflow.db"
MAX_PARAM_CHARS = 6000  # MLflow's limit on a parameter's value

F = TypeVar("F", bound=Callable[..., Any])


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or written; the message names the store."""


def store_uri(target: str) -> tuple[str, str | None]:
    """(tracking URI, artifact location for new experiments) of `--tracking-uri` `target`.

    A target with a scheme is passed to MLflow as it is (its server or database decides where
    artifacts go). A plain path is a local store: a SQLite database in that directory, with
    the artifacts of its experiments in the directory's `artifacts/` folder.
    """
    if "://" in target or target.startswith("sqlite:"):
        return target, None
    root = Path(target).expanduser().resolve()
    return f"sqlite:///{root / DATABASE}", (root / "artifacts").as_uri()


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested parameters as MLflow's flat string mapping (`a.b: value`), each value cut to MLflow's limit."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:MAX_PARAM_CHARS]
    return flat


def numeric(record: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of `record`, as floats (MLflow metrics are numbers; NaN marks "not measured")."""
    out: dict[str, float] = {}
    for key, value in record.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[str(key).replace("@", "_at_")] = float(value)
    return out


@contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """Silence deprecation warnings raised inside MLflow by its own dependencies (not ours to fix):
    its SQL store's through SQLAlchemy, its table logging's through pandas."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*``noload`` loader strategy is deprecated.*")
        warnings.filterwarnings("ignore", message=r"For backward compatibility, 'str' dtypes are included by select_dtypes")
        yield


class Tracker:
    """One MLflow run of a command, or a tracker that records nothing (`enabled=False`).

    Use as a context manager: the run starts on entry (or earlier, with `start`) and ends on
    exit (FAILED when the block raised). Every `log_*` method is a no-op on a disabled tracker.

    Args:
        target: `--tracking-uri`: a local store's directory or a tracking URI.
        experiment: the MLflow experiment the run belongs to (created when missing).
        run_name: the run's name in the store.
        enabled: False records nothing and never imports mlflow.
        tags: tags of the run (the command, the model).
    """

    def __init__(self, target: str, experiment: str, run_name: str, *, enabled: bool = True, tags: Mapping[str, str] | None = None) -> None:
        self.target = target
        self.experiment = experiment
        self.run_name = run_name
        self.enabled = enabled
        self.tags = dict(tags or {})
        self.run_id: str | None = None
        self._client: Any = None

    def __enter__(self) -> Tracker:
        return self.start()

    def start(self) -> Tracker:
        """Open the store and start the run (once); `TrackingError` naming the store when it cannot."""
        if not self.enabled or self.run_id is not None:
            return self
        uri, artifacts = store_uri(self.target)
        if artifacts is not None:
            Path(self.target).expanduser().mkdir(parents=True, exist_ok=True)
        try:
            with _quiet_mlflow():
                from mlflow.tracking import MlflowClient

                client = MlflowClient(tracking_uri=uri)
                found = client.get_experiment_by_name(self.experiment)
                experiment_id = found.experiment_id if found is not None else client.create_experiment(self.experiment, artifact_location=artifacts)
                run = client.create_run(experiment_id, run_name=self.run_name, tags=self.tags)
        except ImportError as error:
            raise TrackingError("tracking needs mlflow: pip install 'botify-lab[ml]' (or ./scripts/setup.sh), or pass --no-track") from error
        except Exception as error:  # MlflowException, connection errors: one line naming the store
            raise TrackingError(f"cannot open the tracking store {uri}: {error}".splitlines()[0]) from error
        self._client, self.run_id = client, run.info.run_id
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if self._client is not None and self.run_id is not None:
            with _quiet_mlflow():
                self._client.set_terminated(self.run_id, status="FINISHED" if kind is None else "FAILED")

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Parameters of the run (nested mappings flattened to `a.b`)."""
        if self._client is None:
            return
        from mlflow.entities import Param

        with _quiet_mlflow():
            self._client.log_batch(self.run_id, params=[Param(key, value) for key, value in flatten(params).items()])

    def log_metrics(self, metrics: Mapping[str, Any], step: int = 0, prefix: str = "") -> None:
        """The finite numbers of `metrics` at `step`, names prefixed with `prefix`."""
        if self._client is None:
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        values = [Metric(f"{prefix}{key}", value, now, step) for key, value in numeric(metrics).items()]
        if values:
            with _quiet_mlflow():
                self._client.log_batch(self.run_id, metrics=values)

    def log_history(self, history: Iterable[Mapping[str, Any]]) -> None:
        """Per-epoch records (the training loop's history) as metrics stepped by their `epoch`."""
        for record in history:
            epoch = int(record.get("epoch", 0))
            self.log_metrics({key: value for key, value in record.items() if key != "epoch"}, step=epoch)

    def log_table(self, rows: list[dict[str, Any]], name: str) -> None:
        """A table (one mapping per row) as a JSON artifact `name` that MLflow's UI shows as a table."""
        if self._client is None or not rows:
            return
        columns = list(dict.fromkeys(key for row in rows for key in row))
        data = {column: [row.get(column) for row in rows] for column in columns}
        with _quiet_mlflow():
            self._client.log_table(self.run_id, data=data, artifact_file=name)

    def log_artifact(self, file: Path) -> None:
        """One file at the top of the run's artifacts."""
        if self._client is None:
            return
        with _quiet_mlflow():
            self._client.log_artifact(self.run_id, str(file))

    def log_artifacts(self, directory: Path, path: str) -> None:
        """Every file of `directory` under `path` in the run's artifacts."""
        if self._client is None:
            return
        with _quiet_mlflow():
            self._client.log_artifacts(self.run_id, str(directory), artifact_path=path)


def tracking_options(experiment: str) -> Callable[[F], F]:
    """The `--tracking-uri`, `--experiment` and `--no-track` options of a command (experiment default `experiment`)."""

    def decorate(command: F) -> F:
        command = click.option("--no-track", is_flag=True, envvar="BOTIFY_NO_TRACK", help="Record nothing in MLflow (env BOTIFY_NO_TRACK=1).")(command)
        command = click.option("--experiment", "mlflow_experiment", default=experiment, show_default=True, help="MLflow experiment of the run.")(command)
        command = click.option(
            "--tracking-uri", envvar="MLFLOW_TRACKING_URI", default=DEFAULT_STORE, show_default=True,
            help="MLflow store: a directory (a local SQLite store) or a tracking URI such as http://host:5000 (env MLFLOW_TRACKING_URI).",
        )(command)
        return command

    return decorate


def open_tracker(target: str, experiment: str, run_name: str, *, enabled: bool, tags: Mapping[str, str]) -> Tracker:
    """A started `Tracker`, or a ClickException naming the store when it cannot start."""
    tracker = Tracker(target, experiment, run_name, enabled=enabled, tags=tags)
    try:
        return tracker.start()
    except TrackingError as error:
        raise click.ClickException(f"{error} (or pass --no-track)") from None
