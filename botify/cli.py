"""The `botify` command: one root group; each subcommand lives beside the code it drives."""

from __future__ import annotations

import click

from botify.eventlog import init_db_command
from botify.export import compact_command, export_command
from botify.server import serve_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """botify: the recommendation service of Botify Lab.

    Start it with `botify serve`; it answers POST /next/<user>, /last/<user> and /batch, and logs
    every served request to a DuckDB event log (docs/botify.md).
    """


main.add_command(serve_command)
main.add_command(init_db_command)
main.add_command(export_command)
main.add_command(compact_command)
