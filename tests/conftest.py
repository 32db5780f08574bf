"""Fixtures shared by more than one test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from daemons import Daemons


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rewrite-stories",
        action="store_true",
        help="write the actual traces into tests/testdata/*.txt instead of comparing",
    )


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    """Real ``kadnode run`` subprocesses; whatever still runs at teardown is SIGKILLed."""
    from daemons import Daemons  # imported here: only daemon tests pay for it

    group = Daemons(tmp_path)
    try:
        yield group
    finally:
        group.close()
