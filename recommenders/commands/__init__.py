"""Subcommands of `recommenders` that live in their own modules: `train` and `evaluate`.

`recommenders.cli` attaches them to the root group with `add_command`.
"""
