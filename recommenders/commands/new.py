"""`recommenders new NAME`: write a plugin package that passes the contract and its own tests as generated."""

from __future__ import annotations

from pathlib import Path

import click

from recommenders import registry
from recommenders.scaffold import ScaffoldError, names_of, write_plugin


@click.command("new")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None, help="Where to write the package [default: ./botify-NAME]; must not exist.")
def new(name: str, directory: Path | None) -> None:
    """Write a plugin package registering a recommender as NAME (recommenders.scaffold).

    The package has a pyproject with the `botify.recommenders` entry point, a working class to
    edit, tests over the contract kit and a CI workflow (.github/workflows/ci.yml) that runs
    the tests, `recommenders check` and the paired gate `python -m sim.gate`.
    """
    target = directory if directory is not None else Path(names_of(name)["distribution"])
    try:
        written = write_plugin(name, target, frozenset(registry.names()))
    except ScaffoldError as error:
        raise click.ClickException(str(error)) from None
    except OSError as error:
        raise click.ClickException(f"cannot write {target}: {error}") from None
    click.echo(f"wrote {len(written)} files to {target}:")
    for path in written:
        click.echo(f"  {path.relative_to(target)}")
    click.echo(f"next: pip install -e {target} && python -m pytest {target}/tests && recommenders check {name} --world data/world --quick")
