"""`python -m kerastl` runs the command line."""

from kerastl.cli import main

main()
