"""``python -m workers.cli``: the ``nurture`` command without the installed script."""

from workers.cli.main import main

main()
