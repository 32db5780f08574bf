"""GET /dashboard and GET /docs in a real headless Chromium (Debian's package) against a running
daemon among real nodes on 127.0.0.1: the bucket bars and ring nodes the page drew
equal what the API reports, and a screenshot of it is saved; Swagger UI at /docs
draws every operation of the OpenAPI document with no way to reach another host.

Where Chromium is missing the test skips and says so, except when CI_REQUIRE_BROWSER
is set (.ci/run installs Chromium and sets it): there a skip would claim nothing, so
it fails instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from loopback import HOST, in_thread, network

from kadnode.cli.client import ApiClient

BROWSER_S = 60
# As the machine's notes start Chromium headless as root on a closed network.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    # Virtual time runs the page's first draws (fetches, timers) before the dump.
    "--virtual-time-budget=5000",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI_REQUIRE_BROWSER"):
            pytest.fail("Chromium is not installed, and CI requires this test to run")
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium): not checked")
    return found


class Drawn(HTMLParser):
    """The bucket bars and ring nodes in the page's DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.buckets: dict[int, int] = {}
        self.ring: set[tuple[str, str]] = set()
        self.draws = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "rect" and "bucket" in classes:
            self.buckets[int(a["data-index"])] = int(a["data-count"])
        elif tag == "circle" and "ring-node" in classes:
            self.ring.add((a["data-role"], a["data-id"]))
        elif tag == "body" and a.get("data-drawn"):
            self.draws = int(a["data-drawn"])


def browse(browser: str, url: str, profile: Path, *extra: str) -> str:
    done = subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={profile}", *extra, url],
        capture_output=True,
        text=True,
        timeout=BROWSER_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_dashboard_draws_what_the_api_reports(tmp_path):
    browser = chromium()
    with in_thread(network(tmp_path / "data")) as net:
        client = ApiClient(net.api, token=net.token)
        for i in range(5):  # something on the latency chart
            client.put(f"key {i}", "value")
            client.lookup(f"{i:040x}")
        url = f"http://{HOST}:{net.api_port}/dashboard"
        dom = browse(browser, url, tmp_path / "profile", "--dump-dom")
        info, peers, ring = client.info(), client.peers(), client.ring()
        shot = tmp_path / "dashboard.png"
        browse(browser, url, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1100,900")
    drawn = Drawn()
    drawn.feed(dom)
    assert drawn.draws >= 1, dom[-2000:]
    me = int(info["id"], 16)
    buckets = Counter((int(p["id"], 16) ^ me).bit_length() - 1 for p in peers["peers"])
    assert drawn.buckets == dict(buckets) and sum(buckets.values()) == info["peers"]
    expected = {("self", ring["self"]["id"])}
    expected |= {("predecessor", ring["predecessor"]["id"])} if ring["predecessor"] else set()
    expected |= {("successor", s["id"]) for s in ring["successors"]}
    expected |= {("finger", f["id"]) for f in ring["fingers"]}
    assert drawn.ring == expected
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if path := os.environ.get("DASHBOARD_SCREENSHOT"):  # docs/dashboard.png is made so
        shutil.copy(shot, path)
    print(f"  drew {len(drawn.buckets)} buckets, {len(drawn.ring)} ring nodes; {drawn.draws} draws")


class Operations(HTMLParser):
    """The operation blocks Swagger UI drew: ids "operations-<tag>-<operationId>"."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if "opblock" in (a.get("class") or "").split() and a.get("id"):
            self.ids.add(a["id"].rpartition("-")[2])


def test_the_docs_page_draws_every_operation_with_no_network_but_loopback(tmp_path):
    browser = chromium()
    with in_thread(network(tmp_path / "data", 1)) as net:
        document = httpx.get(f"http://{HOST}:{net.api_port}/openapi.json").json()
        url = f"http://{HOST}:{net.api_port}/docs"
        # Every name but the node's address fails to resolve: a CDN could not load.
        offline = f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {HOST}"
        dom = browse(browser, url, tmp_path / "profile", offline, "--dump-dom")
    drawn = Operations()
    drawn.feed(dom)
    expected = {op["operationId"] for path in document["paths"].values() for op in path.values()}
    assert drawn.ids == expected, dom[-2000:]
    print(f"  Swagger UI drew {len(drawn.ids)} operations")


def test_the_page_loads_nothing_from_elsewhere():
    from kadnode.shell.dashboard import page

    text = page()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "fetch(path" in text and "@" not in re.sub(r"@media", "", text)
