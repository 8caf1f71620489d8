"""`recommenders evaluate NAME`: the offline comparison of a trained model with the baselines."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from recommenders import registry
from recommenders.commands.common import day_range, open_catalog, parse_params, read_sessions
from recommenders.evaluation import EvaluationError, RandomRanker, Report, StickyArtistRanker, TopPopRanker, build_cases, evaluate
from recommenders.evaluation.protocol import NEGATIVES
from recommenders.evaluation.report import EVALUATION_FILE, FORMATS
from recommenders.models.ranking import Ranker
from recommenders.tracking import open_tracker, tracking_options

BASELINES = ("random", "top_pop", "sticky_artist")
DEFAULT_LIKE_THRESHOLD = 0.5


def _training_cutoff(model: object) -> tuple[int | None, float | None]:
    """(last session start seen in training, in ns; like threshold) as the loaded artifact recorded
    them (`data` and `config` of the project's trainable models); (None, None) for others."""
    data = getattr(model, "data", None)
    cutoff = data.get("last_session_start_ns") if isinstance(data, dict) else None
    return cutoff, getattr(getattr(model, "config", None), "like_threshold", None)


@click.command("evaluate")
@click.argument("name")
@click.option("--artifact", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True, help="The trained model's artifact directory.")
@click.option("--events", type=click.Path(path_type=Path), required=True, help="The event log: a DuckDB file (table `events`) or its Parquet export.")
@click.option("--world", type=click.Path(path_type=Path), required=True, help="The world directory the log was simulated in.")
@click.option("--param", "pairs", multiple=True, metavar="KEY=VALUE", help="A serving parameter of the model (repeatable), as in the experiments file.")
@click.option("--negatives", type=click.IntRange(min=1), default=NEGATIVES, show_default=True, help="Unheard tracks ranked against each held-out like.")
@click.option("--k", type=click.IntRange(min=1), default=10, show_default=True, help="Cut-off of the full-catalog Recall and NDCG.")
@click.option("--like-threshold", type=click.FloatRange(0.0, 1.0), default=None, help="A like is a listen of at least this fraction (default: the model's).")
@click.option("--test-days", type=click.IntRange(min=1), default=1, show_default=True,
              help="For an artifact that does not record its training period: test on the last N simulated days.")
@click.option("--served-by", default=None, metavar="RECOMMENDER",
              help="Test only on sessions served by this recommender (e.g. random: a test free of the logging policy's bias).")
@click.option("--baselines", default=",".join(BASELINES), show_default=True, help="Comma-separated baselines to compare with (empty for none).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seeds the held-out choice, the negatives and random tie-breaks.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--save", is_flag=True, help=f"Also write the table and its settings into the artifact directory ({EVALUATION_FILE}), "
              "where `abtest serve --artifacts` shows it.")
@tracking_options("evaluate")
def evaluate_command(
    name: str, artifact: Path, events: Path, world: Path, pairs: tuple[str, ...], negatives: int, k: int,
    like_threshold: float | None, test_days: int, served_by: str | None, baselines: str, seed: int, fmt: str, save: bool,
    tracking_uri: str, mlflow_experiment: str, no_track: bool,
) -> None:
    """Evaluate the model NAME offline against random, top_pop and sticky_artist.

    The log is split by simulated time: the test sessions are those that started after the
    last session the artifact was trained on (train with --holdout-days 1 to keep the last
    day). In each test session one liked track the listener had not heard before is held out;
    the request is the session up to it. Reported: MRR and Hit@1/5/10 of that track among
    --negatives unheard tracks, and Recall@k / NDCG@k of the full-catalog top k against the
    tracks liked from there to the end of the session. Baselines learn from the training
    period only. Held-out tracks were chosen by the policy that served the log, which favours
    rankers like it (a log served by sticky_artist favours sticky_artist); --served-by random
    tests on the sessions of a random policy only. The run is recorded in MLflow (--tracking-uri;
    off with --no-track): the options as parameters, the model's figures as metrics, the whole
    table as `offline.json`.
    """
    wanted = [item.strip() for item in baselines.split(",") if item.strip()]
    unknown = sorted(set(wanted) - set(BASELINES))
    if unknown:
        raise click.BadParameter(f"unknown baseline(s) {', '.join(unknown)}; choose from {', '.join(BASELINES)}", param_hint="--baselines")
    catalog = open_catalog(world)
    log = read_sessions(events, catalog)
    try:
        model = registry.make(name, catalog, parse_params(pairs), artifact)
    except (registry.RegistryError, OSError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    if not isinstance(model, Ranker):
        raise click.ClickException(f"recommender {name!r} cannot be evaluated offline: it does not score candidate tracks (no score / rank methods)")
    cutoff, threshold = _training_cutoff(model)
    like = like_threshold if like_threshold is not None else (threshold if threshold is not None else DEFAULT_LIKE_THRESHOLD)
    if cutoff is not None:
        train, test = log.until(cutoff), log.after(cutoff)
        if test.n_sessions == 0:
            raise click.ClickException(
                f"the log has no session after the artifact's training period (up to {np.datetime64(cutoff, 'ns')}): "
                f"evaluating on training data would leak; retrain with --holdout-days 1"
            )
    else:
        click.echo(f"warning: {artifact} does not record its training period; testing on the last {test_days} day(s), "
                   "which is leak-free only if the model never saw them", err=True)
        try:
            train, test = log.split_days(test_days)
        except ValueError as error:
            raise click.ClickException(str(error)) from None
    if served_by is not None:
        test = test.served(served_by)
        if test.n_sessions == 0:
            raise click.ClickException(f"no test session was served by {served_by!r} (the log's `recommender` column)")
    cases = build_cases(train, test, catalog.n_tracks, like, negatives=negatives, seed=seed)
    click.echo(f"test: {test.n_sessions} sessions ({day_range(test)}), {len(cases)} held-out likes (like = time >= {like}); "
               f"train: {train.n_sessions} sessions ({day_range(train)})", err=fmt in ("json", "csv"))
    rankers: list[tuple[str, Ranker]] = [(name, model)]
    factories = {
        "random": lambda: RandomRanker(catalog, seed=seed),
        "top_pop": lambda: TopPopRanker(catalog, train),
        "sticky_artist": lambda: StickyArtistRanker(catalog, seed=seed),
    }
    rankers += [(baseline, factories[baseline]()) for baseline in wanted if baseline != name]
    report = Report()
    try:
        for label, ranker in rankers:
            report.add(label, evaluate(ranker, cases, k=k, seed=seed))
    except EvaluationError as error:
        raise click.ClickException(str(error)) from None
    with open_tracker(tracking_uri, mlflow_experiment, f"evaluate {name}", enabled=not no_track, tags={"command": "evaluate", "model": name}) as tracker:
        tracker.log_params({
            "model": name, "artifact": str(artifact), "events": str(events), "world": str(world), "params": parse_params(pairs),
            "negatives": negatives, "k": k, "like_threshold": like, "served_by": served_by, "seed": seed,
        })
        tracker.log_metrics(report.rows[name])
        tracker.log_table(report.to_dicts(), "offline.json")
    click.echo(report.render(fmt))
    if save:
        settings = {
            "events": str(events), "test": day_range(test), "train": day_range(train), "test_sessions": test.n_sessions,
            "cases": len(cases), "k": k, "negatives": negatives, "like_threshold": like, "served_by": served_by,
            "params": list(pairs), "seed": seed,
        }
        try:
            path = report.save(artifact, settings)
        except OSError as error:
            raise click.ClickException(f"cannot save the evaluation into {artifact}: {error.strerror or error}") from None
        click.echo(f"saved: {path}", err=True)
