"""What the daemon logs while it cannot join or is alone: one line an operator can
act on, not the same line every round. A daemon in-process on 127.0.0.1, with the
rejoin round shortened so that several rounds pass."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import socket
from datetime import datetime

import pytest
from loopback import HOST, daemon

from kadnode.shell import daemon as daemon_module

ROUND_S = 0.05


@pytest.fixture
def short_rounds(monkeypatch):
    monkeypatch.setattr(daemon_module, "REJOIN_INTERVAL", ROUND_S)


def lines(caplog, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


async def wait_for_lines(caplog, text: str, count: int, seconds: float) -> None:
    for _ in range(int(seconds / ROUND_S)):
        if len(lines(caplog, text)) >= count:
            return
        await asyncio.sleep(ROUND_S)
    raise AssertionError(f"waited {seconds:g} s for {count} lines of {text!r}")


async def test_a_seed_that_never_answers_is_one_warning_then_debug(tmp_path, caplog, short_rounds):
    caplog.set_level(logging.DEBUG, logger="kadnode")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind((HOST, 0))  # it reads nothing and answers nothing
        async with daemon(tmp_path, [silent.getsockname()]):
            await wait_for_lines(caplog, "could not join", 2, seconds=30)
    failed = lines(caplog, "could not join")
    assert [r.levelno for r in failed[:2]] == [logging.WARNING, logging.DEBUG]
    assert f"none of 1 seeds answered ({HOST}:" in failed[0].getMessage()
    assert not lines(caplog, "joined:")


async def test_a_node_alone_says_so_once(tmp_path, caplog, short_rounds):
    caplog.set_level(logging.INFO, logger="kadnode")
    async with daemon(tmp_path):
        await asyncio.sleep(20 * ROUND_S)
    assert len(lines(caplog, "starts a new network")) == 1


def test_json_logs_are_one_object_a_line(daemons, tmp_path):
    node = daemons.start("node", extra=["--log-format", "json"])
    assert node.stop(signal.SIGTERM) == 0
    records = [json.loads(line) for line in node.log().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records), records
    assert datetime.fromisoformat(records[0]["time"]).tzinfo is not None
    assert any("control api http://" in r["message"] for r in records)
    assert records[-1]["message"] == "stopped" and records[-1]["level"] == "INFO"


async def test_debug_logs_each_api_call(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="kadnode")
    async with daemon(tmp_path) as running:
        await asyncio.to_thread(running.client().info)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("GET /info")]
    assert re.fullmatch(r"GET /info: 200 in \d+\.\d ms", line), line
