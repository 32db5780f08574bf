"""The asyncio shell around the core: sockets, timers, disk, DNS, the daemon and its HTTP API."""
