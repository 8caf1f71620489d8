"""`python -m botify ...` is the `botify` command."""

from botify.cli import main

main()
