"""``python -m kadnode.sim``: every scenario, or one."""

from kadnode.sim.cli import main

raise SystemExit(main())
