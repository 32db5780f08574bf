"""Where ``kadnode run`` takes each setting from. Reads a file and the environment.

First found wins: a command-line flag; then the environment variable
``KADNODE_`` + the flag's name in capitals, dashes as underscores
(``--data-dir``: ``KADNODE_DATA_DIR``; lists comma-separated, switches 1/0,
true/false, yes/no); then the TOML file given by ``--config`` (keys are the
flags' names: ``data-dir = "/var/lib/kadnode"``, ``bootstrap =
["seed.example:8467"]``); then the built-in default. Every value, from
wherever, passes the flag's own check, and a bad one is refused in one line
that names where it came from. ``kadnode config`` prints the outcome, each
setting with its source. The API token is not a setting: it is a secret
(``$KADNODE_API_TOKEN``), never printed.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kadnode.errors import LocalProtocolError

ENV_PREFIX = "KADNODE_"
NOT_SETTINGS = frozenset({"help", "config"})
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class Setting:
    name: str  # the flag's name, without its dashes: a TOML key
    dest: str  # the parsed argument's attribute
    value: Any
    source: str  # "flag", "$KADNODE_...", "the file PATH", "default"


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper().replace("-", "_")


def settings_of(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The parser's settings by name: every long option but help and --config."""
    return {
        action.option_strings[-1].removeprefix("--"): action
        for action in parser._actions
        if action.option_strings and action.dest not in NOT_SETTINGS
    }


def read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise LocalProtocolError(f"config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise LocalProtocolError(f"config file {path}: not TOML: {exc}") from None


def resolve(
    parser: argparse.ArgumentParser,
    given: argparse.Namespace,
    file: Path | None,
    environ: Mapping[str, str],
) -> list[Setting]:
    """Each setting of ``parser`` from ``given`` (the flags, parsed with every
    default suppressed), the environment, the file, else its default."""
    actions = settings_of(parser)
    from_file = read_file(file) if file is not None else {}
    unknown = sorted(set(from_file) - set(actions))
    if unknown:
        raise LocalProtocolError(
            f"config file {file}: unknown setting {unknown[0]!r} (known: {', '.join(actions)})"
        )
    out = []
    for name, action in actions.items():
        if hasattr(given, action.dest):
            out.append(Setting(name, action.dest, getattr(given, action.dest), "flag"))
        elif env_name(name) in environ:
            where = f"${env_name(name)}"
            value = _from_text(action, environ[env_name(name)], where)
            out.append(Setting(name, action.dest, value, where))
        elif name in from_file:
            where = f"config file {file}"
            value = _from_toml(action, from_file[name], where)
            out.append(Setting(name, action.dest, value, where))
        else:
            out.append(Setting(name, action.dest, action.default, "default"))
    return out


def _from_text(action: argparse.Action, text: str, where: str) -> Any:
    if isinstance(action, argparse._StoreTrueAction):
        word = text.strip().lower()
        if word not in _TRUE + _FALSE:
            raise LocalProtocolError(f"{where}: not a switch: {text!r} (use 1 or 0)")
        return word in _TRUE
    if isinstance(action, argparse._AppendAction):
        return [_one(action, item.strip(), where) for item in text.split(",") if item.strip()]
    return _one(action, text, where)


def _from_toml(action: argparse.Action, value: Any, where: str) -> Any:
    name = action.option_strings[-1].removeprefix("--")
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise LocalProtocolError(f"{where}: {name} must be true or false, not {value!r}")
        return value
    if isinstance(action, argparse._AppendAction):
        if not isinstance(value, list):
            raise LocalProtocolError(f"{where}: {name} must be a list, e.g. {name} = [...]")
        return [_one(action, str(item), where) for item in value]
    if isinstance(value, (dict, list, bool)):
        raise LocalProtocolError(f"{where}: {name} must be a string or a number, not {value!r}")
    return _one(action, str(value), where)


def _one(action: argparse.Action, text: str, where: str) -> Any:
    name = action.option_strings[-1].removeprefix("--")
    try:
        value = action.type(text) if action.type is not None else text
    except (argparse.ArgumentTypeError, ValueError) as exc:
        why = str(exc) if str(exc).startswith(name) else f"{name}: {exc}"
        raise LocalProtocolError(f"{where}: {why}") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise LocalProtocolError(f"{where}: {name}: {value!r} is not one of {choices}")
    return value


def render(settings: list[Setting]) -> str:
    """As a TOML file that would give the same, each line's source beside it."""
    return "".join(
        f"# {s.name}: not set  # {s.source}\n"
        if s.value is None
        else f"{s.name} = {_toml(s.value)}  # {s.source}\n"
        for s in settings
    )


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, tuple):  # HOST:PORT
        host, port = value
        return json.dumps(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))
