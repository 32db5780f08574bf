"""The README's "Limits a hostile network meets" and its size limits quote the defaults kadnode
actually has (kadnode/config.py), so a changed default cannot leave the page
promising another."""

from __future__ import annotations

from pathlib import Path

from kadnode import config

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def section() -> str:
    text = README.split("### Limits a hostile network meets")[1].split("\n#")[0]
    return " ".join(text.split())


def test_the_readme_quotes_the_configured_limits():
    prose = section()
    for claim in (
        f"within {config.AMPLIFICATION:g}x the bytes",
        f"{config.REQUESTS_PER_IP:,.0f} requests a second per IP",
        f"{config.REQUESTS_PER_SUBNET:,.0f} per /24",
        f"{config.REQUESTS_TOTAL:,.0f} in all",
        f"at most {config.PER_SUBNET_BUCKET} contacts of one /24 in a bucket",
        f"{config.PER_SUBNET_TABLE} in the table",
        f"the {config.MAX_VALUE_BYTES:,}-byte limit",
        f"at most {config.MAX_STORED_VALUES:,} values",
        f"{config.MAX_STORED_BYTES // 2**20} MiB",
        "a sixteenth of either",
        f"{config.BACKGROUND_BUDGET} records every {config.BACKGROUND_PAUSE * 1000:g} ms",
        f"{config.AE_JOBS_PER_ROUND} jobs a minute each",
    ):
        assert claim in prose, claim
    assert config.ANTI_ENTROPY_INTERVAL == 60.0  # "a minute" above
    assert config.MAX_VALUES_PER_SUBNET == config.MAX_STORED_VALUES // 16  # "a sixteenth"
    assert config.MAX_BYTES_PER_SUBNET == config.MAX_STORED_BYTES // 16


def test_the_readme_states_the_key_and_value_size_limits():
    shell = README.split("## Talk to a node from a shell")[1].split("\n## ")[0]
    prose = " ".join(shell.split())
    assert f"a key is at most {config.MAX_KEY_BYTES} bytes" in prose
    assert f"a value at most {config.MAX_VALUE_BYTES} bytes" in prose


def test_the_readme_quotes_the_watch_schedule_and_limits():
    from kadnode.shell.httpserver import MAX_CONNECTIONS

    prose = " ".join(README.split())
    for claim in (
        f"{config.WATCH_POLL_MIN:g} s after a change, the wait doubling to"
        f" {config.WATCH_POLL_MAX:g} s while nothing changes",
        f"within {config.WATCH_POLL_MAX:g} s and a read of its landing",
        f"at most {config.WATCH_STREAMS_PER_CLIENT} streams per client and"
        f" {config.WATCH_STREAMS} in all",
        f"cap of {MAX_CONNECTIONS} connections",
    ):
        assert claim in prose, claim
