"""The ``kadnode`` command line."""
