"""The protocol core: pure, no asyncio, socket, time, sqlite3 or global random."""
