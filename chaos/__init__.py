"""Chaos tests for kadnode against real networks: docker containers, network
namespaces, or plain processes on loopback. ``chaos/run.py`` is the command
line; see chaos/README.md."""
