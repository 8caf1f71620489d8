"""`python -m abtest ...` is the `abtest` command."""

from abtest.cli import main

main()
