"""Who may call the control API (kadnode.shell.apiguard): a web page, a rebinding
DNS name, a caller without the token. The live tests send the exact bytes a
browser or an attacker would, to a daemon on 127.0.0.1, and check it still runs.

Loopback only: an API on 0.0.0.0 is called at 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path

import pytest
from daemons import HOST, assert_one_line_error, free_port, kadnode
from loopback import daemon

from kadnode.errors import LocalProtocolError
from kadnode.shell.apiguard import TOKEN_MIN_CHARS, Guard
from kadnode.shell.datadir import TOKEN_FILE

TOKEN = "t" * TOKEN_MIN_CHARS
LOCAL = Guard(TOKEN, local=True)
OPEN = Guard(TOKEN, local=False)  # listening beyond loopback


def status(guard: Guard, method: str, **headers: str) -> int:
    """What the guard answers: 0 when it lets the request through."""
    refused = guard.refusal(method, {k.replace("_", "-"): v for k, v in headers.items()})
    return 0 if refused is None else refused.status


# -- the rules --------------------------------------------------------------------------------


def test_on_loopback_reads_need_no_token_and_changes_need_it():
    assert status(LOCAL, "GET", host="127.0.0.1:8468") == 0
    assert status(LOCAL, "HEAD", host="localhost:8468") == 0
    for method in ("POST", "PUT", "DELETE"):
        assert status(LOCAL, method, host="127.0.0.1:8468") == 401
        assert status(LOCAL, method, host="[::1]:8468", authorization=f"Bearer {TOKEN}") == 0
        assert status(LOCAL, method, host="127.0.0.1:8468", authorization="Bearer wrong") == 401
        assert status(LOCAL, method, host="127.0.0.1:8468", authorization=f"Basic {TOKEN}") == 401


def test_a_refused_call_says_how_to_send_the_token():
    refused = LOCAL.refusal("POST", {"host": "127.0.0.1:8468"})
    assert (
        refused is not None and "--data-dir" in str(refused) and "KADNODE_API_TOKEN" in str(refused)
    )
    assert ("WWW-Authenticate", 'Bearer realm="kadnode"') in refused.headers


def test_on_loopback_only_loopback_names_are_served():
    for host in ("evil.example:8468", "evil.example", "10.0.0.1:8468", "127.0.0.1.evil.example"):
        assert status(LOCAL, "GET", host=host) == 403, host
    assert status(LOCAL, "GET") == 400  # no Host at all
    for host in ("127.0.0.1", "127.0.0.2:80", "localhost", "LOCALHOST:1", "[::1]:8468"):
        assert status(LOCAL, "GET", host=host) == 0, host


def test_a_foreign_origin_is_refused_even_with_the_token():
    token = f"Bearer {TOKEN}"
    for origin in ("http://evil.example", "null", "https://127.0.0.1:8468"):
        assert (
            status(LOCAL, "POST", host="127.0.0.1:8468", origin=origin, authorization=token) == 403
        )
    assert status(LOCAL, "POST", host="127.0.0.1:8468", origin="http://127.0.0.1:8468",
                  authorization=token) == 0  # fmt: skip


def test_beyond_loopback_every_route_needs_the_token_and_any_host_name_is_served():
    assert status(OPEN, "GET", host="node7.example:8468") == 401
    assert status(OPEN, "GET", host="node7.example:8468", authorization=f"Bearer {TOKEN}") == 0


# -- a daemon, called as a browser and an attacker would -------------------------------------


async def send(port: int, raw: bytes) -> tuple[int, bytes]:
    """``raw`` to 127.0.0.1:``port`` as it is; the reply's status and body."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(raw)
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def request(method: str, path: str, port: int, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", *headers, f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode() + body


async def test_a_cross_site_form_post_cannot_stop_the_daemon(tmp_path):
    async with daemon(tmp_path) as running:
        port, host = running.api_port, f"Host: {running.api}"
        form = "Content-Type: application/x-www-form-urlencoded"
        # What a page on another site sends for <form method=post action=".../leave">:
        sent = request("POST", "/leave", port, host, "Origin: http://evil.example", form)
        code, body = await send(port, sent)
        assert (code, b"cross-origin" in body) == (403, True), body
        # The same without an Origin (a client that leaves it out), and without the token:
        code, body = await send(port, request("POST", "/leave", port, host, form))
        assert (code, b"Bearer TOKEN" in body) == (401, True), body
        # A page on a name re-pointed at 127.0.0.1 (DNS rebinding) reading /info:
        code, body = await send(port, request("GET", "/info", port, f"Host: evil.example:{port}"))
        assert (code, b"is not this machine" in body) == (403, True), body
        # A write without the token, with a wrong one:
        put = ["Content-Type: application/json"]
        value = b'{"value": "v"}'
        code, _ = await send(port, request("PUT", "/values/k", port, host, *put, body=value))
        assert code == 401
        bad = "Authorization: Bearer " + "x" * 43
        code, _ = await send(port, request("PUT", "/values/k", port, host, bad, *put, body=value))
        assert code == 401
        assert not running.stopped.done()
        # The daemon's own token does it, and reads need none on loopback.
        good = f"Authorization: Bearer {running.token}"
        code, body = await send(
            port, request("PUT", "/values/k", port, host, good, *put, body=value)
        )
        assert code == 200, body
        code, _ = await send(port, request("GET", "/info", port, host))
        assert code == 200


async def test_the_token_is_made_private_in_the_data_directory_and_kept(tmp_path):
    async with daemon(tmp_path) as running:
        first = running.token
    path = tmp_path / TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == first and len(first) >= TOKEN_MIN_CHARS
    async with daemon(tmp_path) as running:
        assert running.token == first


async def test_an_api_beyond_loopback_without_a_chosen_token_does_not_start(tmp_path):
    with pytest.raises(LocalProtocolError, match="beyond this machine, with no token"):
        async with daemon(tmp_path / "data", api_host="0.0.0.0"):
            pass
    assert not (tmp_path / "data").exists()  # a start that fails leaves nothing behind
    with pytest.raises(LocalProtocolError, match="at least 16"):
        async with daemon(tmp_path / "data", api_host="0.0.0.0", api_token="short"):
            pass


async def test_an_api_beyond_loopback_answers_only_with_the_token(tmp_path):
    chosen = "chosen-by-the-operator-" + "x" * 10
    async with daemon(tmp_path, api_host="0.0.0.0", api_token=chosen) as running:
        port, host = running.api_port, f"Host: {running.api}"
        code, body = await send(port, request("GET", "/info", port, host))
        assert (code, b"Bearer TOKEN" in body) == (401, True), body
        code, _ = await send(
            port, request("GET", "/info", port, host, f"Authorization: Bearer {chosen}")
        )
        assert code == 200
        assert not (tmp_path / TOKEN_FILE).exists()  # the operator's, not one of the data dir's


def test_the_cli_refuses_an_open_api_without_a_token_in_one_line(tmp_path):
    udp, api = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    data = tmp_path / "data"
    argv = ["--port", str(udp), "--api", f"0.0.0.0:{api}", "--data-dir", str(data)]
    done = kadnode("run", "--host", HOST, *argv)
    assert_one_line_error(done, "set $KADNODE_API_TOKEN")
    assert not data.exists()  # refused before anything was made or bound


def test_the_cli_reads_the_token_from_the_data_directory_or_the_environment(tmp_path, monkeypatch):
    from kadnode.cli.client import api_token

    assert api_token(tmp_path) is None
    (tmp_path / TOKEN_FILE).write_text(TOKEN + "\n")
    assert api_token(tmp_path) == TOKEN
    monkeypatch.setenv("KADNODE_API_TOKEN", "from-the-environment-1234")
    assert api_token(tmp_path) == "from-the-environment-1234"
    assert api_token(Path(os.devnull)) == "from-the-environment-1234"


async def test_the_metrics_listener_serves_reads_only_and_without_the_token(tmp_path):
    chosen = "chosen-by-the-operator-" + "x" * 10
    async with daemon(tmp_path, api_host="0.0.0.0", api_token=chosen, metrics=(HOST, 0)) as running:
        port, host = running.daemon.metrics_port, f"Host: {HOST}"
        code, body = await send(port, request("GET", "/metrics", port, host))
        assert code == 200 and b"# TYPE kadnode_peers gauge" in body
        assert (await send(port, request("GET", "/health", port, host)))[0] == 200
        assert (await send(port, request("GET", "/info", port, host)))[0] == 404
        assert (await send(port, request("POST", "/leave", port, host)))[0] == 404
        assert not running.stopped.done()
        # The control API itself still wants the token for the same read.
        assert (await send(running.api_port, request("GET", "/metrics", port, host)))[0] == 401
