"""``python -m kadnode.cli``: the ``kadnode`` command."""

from kadnode.cli.main import main

raise SystemExit(main())
