"""The `recommenders` command: list the registered recommenders and check one against the contract.

One root group; each subcommand is a plain click command attached with `add_command`.
Subcommands that live in their own modules (`train`, `evaluate`, `tune`, `new`) are attached at the bottom
of this file, next to the others.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from contracts.catalog import Catalog, CatalogError
from recommenders import registry
from recommenders.base import Fittable, Recommender
from recommenders.commands.common import parse_params
from recommenders.testing import DEFAULT_LATENCY_BUDGET, QUICK_REQUESTS, ContractError, check_recommender, make_requests


def artifact_kind(cls: type[Recommender]) -> str:
    """"required" for a `Trainable`, "optional" for another `Fittable` (it answers from a prior), else "none"."""
    if not issubclass(cls, Fittable):
        return "none"
    return "required" if cls.requires_fit else "optional"


def describe(entry: registry.Entry) -> dict[str, str]:
    """One row of `recommenders list`: name, origin, artifact, target, status."""
    row = {"name": entry.name, "origin": entry.origin, "artifact": "-", "target": entry.target, "status": "ok"}
    try:
        row["artifact"] = artifact_kind(registry.get_class(entry.name))
    except registry.RegistryError as error:
        cause = error.__cause__
        row["status"] = f"unavailable: {cause if cause is not None else error}"
    return row


@click.group()
def main() -> None:
    """Botify Lab recommenders: the built-ins and installed plugins (entry-point group `botify.recommenders`)."""


@main.command("list")
@click.option(
    "--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True, help="Table for people, JSON for scripts."
)
def list_recommenders(output: str) -> None:
    """List every registered recommender: where it comes from and whether it needs an artifact.

    ARTIFACT is "required" for trainable recommenders (train them, then serve the artifact
    directory), "optional" for those that can load one (top_pop), "none" otherwise. STATUS says
    why an entry cannot be loaded (e.g. its module is not installed).
    """
    rows = [describe(entry) for entry in sorted(registry.entries().values())]
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        columns = ("name", "origin", "artifact", "status", "target")
        widths = {column: max(len(column), *(len(row[column]) for row in rows)) for column in columns[:-1]}
        click.echo("  ".join(column.upper().ljust(widths.get(column, 0)) for column in columns).rstrip())
        for row in rows:
            click.echo("  ".join(row[column].ljust(widths.get(column, 0)) for column in columns).rstrip())
    broken = [row["name"] for row in rows if row["status"] != "ok"]
    if broken:
        raise click.ClickException(f"{len(broken)} registered recommender(s) cannot be loaded: {', '.join(broken)}")


@main.command("check")
@click.argument("name")
@click.option("--world", type=click.Path(path_type=Path), required=True, help="World directory whose public catalog the recommender serves.")
@click.option("--param", "pairs", multiple=True, metavar="KEY=VALUE", help="A construction parameter (repeatable), as in the experiments file.")
@click.option(
    "--artifact",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="Artifact directory to load; without it a trainable recommender is fitted on a synthetic log.",
)
@click.option(
    "--requests", "n_requests", type=click.IntRange(10, 100_000), default=None, help="How many synthetic requests each check asks [default: 500; 50 with --quick]."
)
@click.option("--quick", is_flag=True, help="Fewer requests, a smaller synthetic log, one timed batch: the same rules in seconds, for editing loops.")
@click.option("--all", "keep_going", is_flag=True, help="Run every rule and report every broken one (default: stop at the first).")
@click.option(
    "--budget-ms",
    type=click.FloatRange(min=0.001),
    default=DEFAULT_LATENCY_BUDGET * 1e3,
    show_default=True,
    help="Most milliseconds the median recommend() call may take.",
)
def check(
    name: str, world: Path, pairs: tuple[str, ...], artifact: Path | None, n_requests: int | None, quick: bool, keep_going: bool, budget_ms: float
) -> None:
    """Run the contract kit (recommenders.testing) on the recommender registered as NAME.

    Checks answers without exceptions, valid track ids and propensities (the service's own
    validator, recommenders.answers), the latency budget (probed on the first calls), no repeats
    within a session while avoidable, released tracks only, determinism, batch = single answers,
    parameter handling and the artifact round trip. Prints each rule as it passes; stops at the
    first broken rule (exit 1) unless --all.
    """
    try:
        catalog = Catalog(world)
        cls = registry.get_class(name)
    except (CatalogError, registry.RegistryError) as error:
        raise click.ClickException(str(error)) from None
    params = parse_params(pairs)

    if artifact is not None and not issubclass(cls, Fittable):
        raise click.ClickException(f"recommender {name!r} takes no artifact, but --artifact {artifact} was given")

    def factory() -> Recommender:
        recommender = cls(catalog, **params)
        if artifact is not None and isinstance(recommender, Fittable):
            recommender.load(artifact)
        return recommender

    try:
        factory()
    except (TypeError, ValueError, OSError) as error:
        raise click.ClickException(f"cannot build {name!r}: {error}") from None
    def progress(rule: str, error: ContractError | None) -> None:
        click.echo(f"  ok  {rule}" if error is None else f"  FAIL {rule}")

    count = n_requests if n_requests is not None else (QUICK_REQUESTS if quick else 500)
    click.echo(f"{name}: checking over {count} requests{' (quick)' if quick else ''}")
    try:
        report = check_recommender(
            factory, catalog, requests=make_requests(catalog, count), latency_budget=budget_ms / 1e3,
            quick=quick, keep_going=keep_going, progress=progress,
        )
    except ContractError as error:
        raise click.ClickException(str(error)) from None
    except Exception as error:  # e.g. fit on the synthetic log failed: still one line naming it
        raise click.ClickException(f"recommender {name!r}: the contract kit stopped on {type(error).__name__}: {error}") from None
    click.echo(str(report))


# Subcommands defined in their own modules are attached here.
from recommenders.commands.evaluate import evaluate_command  # noqa: E402
from recommenders.commands.new import new  # noqa: E402
from recommenders.commands.train import train  # noqa: E402
from recommenders.commands.tune import tune_command  # noqa: E402

main.add_command(train)
main.add_command(evaluate_command)
main.add_command(tune_command)
main.add_command(new)
