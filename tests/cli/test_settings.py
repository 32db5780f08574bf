"""Where `kadnode run` takes each setting from: a flag, then KADNODE_* variables,
then the --config file, then the default; `kadnode config` shows the outcome."""

from __future__ import annotations

import re

import pytest
from daemons import Daemons

from kadnode.cli.main import main


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    import os

    for name in [n for n in os.environ if n.startswith("KADNODE_")]:
        monkeypatch.delenv(name)


def config(capsys, *argv: str) -> tuple[int, dict[str, tuple[str, str]], str]:
    """``kadnode config ARGV``: exit status, {setting: (value, source)}, stderr."""
    code = main(["config", *argv])
    out, err = capsys.readouterr()
    shown = {}
    for line in out.splitlines():
        if found := re.fullmatch(r"(\S+) = (.*)  # (.*)", line):
            shown[found[1]] = (found[2], found[3])
        elif found := re.fullmatch(r"# (\S+): not set  # (.*)", line):
            shown[found[1]] = ("", found[2])
    return code, shown, err


def test_a_flag_beats_the_environment_which_beats_the_file(capsys, monkeypatch, tmp_path):
    file = tmp_path / "kadnode.toml"
    file.write_text(
        'port = 1111\nhost = "127.0.0.1"\nbootstrap = ["10.0.0.1:8467", "seed.example:8467"]\n'
        'allow-fault-injection = true\nlog-level = "debug"\n'
    )
    monkeypatch.setenv("KADNODE_PORT", "2222")
    monkeypatch.setenv("KADNODE_EXEMPT", "10.0.0.0/8, 192.168.0.0/16")
    code, shown, _ = config(capsys, "--config", str(file), "--log-level", "warning")
    assert code == 0
    assert shown["port"] == ("2222", "$KADNODE_PORT")
    assert shown["host"] == ('"127.0.0.1"', f"config file {file}")
    assert shown["bootstrap"] == ('["10.0.0.1:8467", "seed.example:8467"]', f"config file {file}")
    assert shown["allow-fault-injection"] == ("true", f"config file {file}")
    assert shown["exempt"] == ('["10.0.0.0/8", "192.168.0.0/16"]', "$KADNODE_EXEMPT")
    assert shown["log-level"] == ('"warning"', "flag")
    assert shown["api"] == ('"127.0.0.1:8468"', "default")
    assert shown["dns-server"] == ("", "default")


def test_what_config_prints_is_a_file_that_gives_the_same(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("KADNODE_ADVERTISE", "192.0.2.7:8467")
    _, first, _ = config(capsys, "--port", "4242", "--bootstrap", "[::1]:8467")
    printed = "\n".join(f"{k} = {v}" for k, (v, _) in first.items() if v)
    (tmp_path / "again.toml").write_text(printed + "\n")
    monkeypatch.delenv("KADNODE_ADVERTISE")
    _, again, _ = config(capsys, "--config", str(tmp_path / "again.toml"))
    assert {k: v for k, (v, _) in again.items()} == {k: v for k, (v, _) in first.items()}


@pytest.mark.parametrize(
    ("content", "env", "error"),
    [
        ('port = "x"\n', {}, "config file {file}: port: not a port number: 'x'"),
        ("prot = 1\n", {}, "config file {file}: unknown setting 'prot'"),
        ("port = \n", {}, "config file {file}: not TOML: Invalid value (at line 1, column 8)"),
        ('bootstrap = "a:1"\n', {}, "config file {file}: bootstrap must be a list"),
        ("allow-fault-injection = 1\n", {}, "must be true or false, not 1"),
        ('log-level = "loud"\n', {}, "log-level: 'loud' is not one of debug, info"),
        ("", {"KADNODE_PORT": "99999"}, "$KADNODE_PORT: port must be 0..65535, not 99999"),
        ("", {"KADNODE_ALLOW_FAULT_INJECTION": "maybe"}, "not a switch: 'maybe'"),
        ("", {"KADNODE_BOOTSTRAP": "nocolon"}, "$KADNODE_BOOTSTRAP: bootstrap: bad address"),
    ],
)
def test_a_bad_setting_is_one_line_naming_where_it_came_from(
    capsys, monkeypatch, tmp_path, content, env, error
):
    file = tmp_path / "kadnode.toml"
    file.write_text(content)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for command in ("config", "run"):
        assert main([command, "--config", str(file)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1, err
        assert err.startswith("kadnode: error: ") and error.format(file=file) in err, err


def test_a_missing_config_file_is_one_line(capsys, tmp_path):
    assert main(["config", "--config", str(tmp_path / "nope.toml")]) == 2
    assert capsys.readouterr().err == (
        f"kadnode: error: config file {tmp_path / 'nope.toml'}: No such file or directory\n"
    )


def test_run_takes_its_settings_from_the_file(daemons: Daemons, tmp_path):
    file = tmp_path / "kadnode.toml"
    file.write_text('advertise = ["192.0.2.7:4242"]\nlog-level = "debug"\n')
    node = daemons.start("node", extra=["--config", str(file)])
    node.wait_log(re.compile(r"advertising 192\.0\.2\.7:4242"))
