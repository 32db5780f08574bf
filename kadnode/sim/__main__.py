"""``python -m kadnode.sim``: every scenario, or one."""

from kadnode.sim.bundle import main

raise SystemExit(main())
