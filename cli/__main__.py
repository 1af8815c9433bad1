"""``python -m lungai.cli ...``: the same as the ``lungai`` command."""

from lungai.cli.main import main

main()
