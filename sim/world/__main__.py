"""`python -m sim.world`: generate a world directory from a config and a seed."""

from __future__ import annotations

import time
from pathlib import Path

import click

from sim.world.config import ConfigError, load_world_config
from sim.world.generate import generate_world

DEFAULT_CONFIG = Path("config/world.yml")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=DEFAULT_CONFIG, show_default=True,
              help="World config (YAML). Without the file, the built-in defaults are used.")
@click.option("--seed", type=int, default=None, help="Override the config's seed.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("data/world"), show_default=True,
              help="Directory to write the world to.")
@click.option("--tracks", type=int, default=None, help="Override the number of tracks.")
@click.option("--users", type=int, default=None, help="Override the number of listeners.")
@click.option("--force", is_flag=True, help="Replace an existing world directory.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def main(config_path: Path, seed: int | None, out: Path, tracks: int | None, users: int | None, force: bool, quiet: bool) -> None:
    """Generate a deterministic world: catalog, tags, content frames and listeners.

    The same config and seed always give byte-identical files. The world's public half
    (OUT/public) is what recommenders see; OUT/hidden holds the truth for the simulator.
    """
    try:
        if config_path.exists():
            config = load_world_config(config_path, seed=seed, tracks=tracks, users=users)
        elif config_path == DEFAULT_CONFIG:
            from sim.world.config import world_config_from_mapping

            overrides = {"seed": seed, "tracks": tracks, "users": users}
            config = world_config_from_mapping({k: v for k, v in overrides.items() if v is not None}, source="defaults")
        else:
            raise ConfigError(f"world config {config_path} does not exist")
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    if out.exists() and not force:
        raise click.ClickException(f"{out} already exists; pass --force to replace it")
    started = time.perf_counter()
    generate_world(config, out, progress=not quiet, overwrite=force)
    click.echo(
        f"world: {config.tracks} tracks, {config.artists} artists, {config.users} listeners "
        f"(seed {config.seed}) written to {out} in {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
