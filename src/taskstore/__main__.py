"""``python -m taskstore``: the same as the ``taskstore`` command."""

from .cli import main

main()
