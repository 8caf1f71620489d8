"""`python -m recommenders ...` is the `recommenders` command."""

from recommenders.cli import main

main()
