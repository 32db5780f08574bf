"""Bad ``kadnode run`` input ends in one line on stderr, never a traceback."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import pytest

import kadnode.shell.daemon
from kadnode.cli.main import main
from kadnode.errors import LocalProtocolError
from kadnode.shell.daemon import DaemonOptions, run_daemon

TIMEOUT = 30.0


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_bad_dns_server_is_refused_at_parse_time_in_one_line(tmp_path):
    data_dir = tmp_path / "data"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kadnode.cli",
            "run",
            "--data-dir",
            str(data_dir),
            "--port",
            "0",
            "--dns-seed",
            "x",
            "--dns-server",
            "notanip",
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert errors == [
        "kadnode run: error: argument --dns-server: name server 'notanip': not an IP address"
    ]
    assert not data_dir.exists()  # refused before the daemon touched anything


async def test_a_kadnode_error_in_the_daemon_tasks_is_not_an_exception_group(tmp_path):
    # Past the parser's check (an embedding program): join() raises inside the
    # TaskGroup, and the caller still gets the KadnodeError itself.
    options = DaemonOptions(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path,
        dns_seeds=["x"],
        dns_nameservers=["notanip"],
        api_port=0,
    )
    async with asyncio.timeout(TIMEOUT):
        with pytest.raises(LocalProtocolError, match="not an IP address"):
            await run_daemon(options, stop=asyncio.Event())


def test_a_kadnode_error_while_running_is_one_line(tmp_path, monkeypatch, capsys):
    async def failing(*args, **kwargs):
        raise LocalProtocolError("seeds went wrong")

    monkeypatch.setattr(kadnode.shell.daemon, "resolve_seeds", failing)
    api = f"127.0.0.1:{free_tcp_port()}"  # the CLI takes no port 0 for the API
    argv = ["run", "--data-dir", str(tmp_path), "--host", "127.0.0.1", "--port", "0"]
    assert main([*argv, "--api", api, "--dns-seed", "x"]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "kadnode: error: seeds went wrong\n" in err
