"""``python -m services.cli``: the same as the ``pipeq`` command."""

from services.cli import main

main()
