"""A simulation's report: its table, notes and verdict as text, markdown and JSON.

Pure apart from :func:`write_report`, which writes ``<scenario>.md`` (and,
through :mod:`kadnode.sim.plots`, ``<scenario>.png``) into a directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kadnode.sim.plots import plot


@dataclass
class Report:
    """What one scenario run found: a table, more tables (``extra``), notes, the
    invariants it broke (``failures``), its trace digest and run figures (``perf``)."""

    scenario: str
    title: str
    seed: int
    nodes: int
    columns: list[tuple[str, str]]  # (row key, header)
    rows: list[dict]
    notes: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    perf: dict = field(default_factory=dict)
    series: dict = field(default_factory=dict)  # extra data for the plot
    failures: list[str] = field(default_factory=list)  # violated invariants
    digest: str = ""
    extra: list[tuple[str, list[tuple[str, str]], list[dict]]] = field(default_factory=list)
    reproduce: str | None = None  # the command that replays it, when not command()
    reproduce_note: str = ""
    loss: float | None = None  # the --loss it ran with, if one was given

    @property
    def ok(self) -> bool:
        return not self.failures

    def command(self) -> str:
        if self.reproduce:
            return self.reproduce
        loss = "" if self.loss is None else f" --loss {self.loss:g}"
        return f"kadnode sim {self.scenario} --nodes {self.nodes} --seed {self.seed}{loss}"

    def how(self) -> str:
        """The command in backticks, and why it is that command if it is not the obvious one."""
        note = f" ({self.reproduce_note})" if self.reproduce_note else ""
        return f"`{self.command()}`{note}"

    def as_json(self) -> dict:
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "nodes": self.nodes,
            "loss": self.loss,
            "command": self.command(),
            "ok": self.ok,
            "failures": self.failures,
            "digest": self.digest,
            "params": self.params,
            "rows": self.rows,
            "tables": {title: rows for title, _, rows in self.extra},
            "notes": self.notes,
            "perf": self.perf,
        }

    def table(self) -> str:
        return _table(self.columns, self.rows)

    def markdown(self, image: str | None = None) -> str:
        out = [f"# {self.title}", "", self.how(), ""]
        if self.params:
            out += [
                "Parameters: " + ", ".join(f"{k} = {_cell(v)}" for k, v in self.params.items()),
                "",
            ]
        out += [self.table(), ""]
        for title, columns, rows in self.extra:
            out += [f"## {title}", "", _table(columns, rows), ""]
        if image:
            out += [f"![{self.scenario}]({image})", ""]
        out += [f"- {note}" for note in self.notes]
        if self.notes:
            out.append("")
        verdict = "all invariants held" if self.ok else "FAILED: " + "; ".join(self.failures)
        out += [f"Result: {verdict}.", ""]
        perf = self.perf
        out += [
            "Run: "
            + ", ".join(f"{k.replace('_', ' ')} {_cell(v)}" for k, v in perf.items())
            + f"; trace digest `{self.digest[:16]}`.",
            "",
        ]
        return "\n".join(out)

    def text(self) -> str:
        failed = "; ".join(self.failures)
        verdict = "ok" if self.ok else f"FAILED (seed {self.seed}): {failed}"
        return "\n".join(
            [
                self.title,
                self.table(),
                *(f"{title}:\n{_table(columns, rows)}" for title, columns, rows in self.extra),
                *(f"  {note}" for note in self.notes),
                f"  {verdict}; digest {self.digest[:16]}; "
                + ", ".join(f"{k} {_cell(v)}" for k, v in self.perf.items()),
            ]
        )


# Row keys holding a share (0..1): tables show them as percentages.
_SHARES = {
    "nearest", "exact", "chord_ok", "lookup_fail", "get_fail", "get_fail_after",
    "primary_lost", "all_lost", "lookup_ok", "get_ok", "span", "cross_share", "neighbours",
    "ring_ok", "cross_ok", "cross_split", "neighbours_split", "ring_split", "neighbours_end",
    "dead", "loss",
}  # fmt: skip


def _table(columns: list[tuple[str, str]], rows: list[dict]) -> str:
    head = "| " + " | ".join(h for _, h in columns) + " |"
    rule = "|" + "|".join("---:" for _ in columns) + "|"
    lines = [head, rule]
    for row in rows:
        cells = [_percent(row.get(k)) if k in _SHARES else _cell(row.get(k)) for k, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _percent(value: object) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return _cell(value)
    if value in (0, 1):
        return f"{value:.0%}"
    return f"{value:.1%}" if 0.001 <= value <= 0.999 else f"{value:.2%}"


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):  # counts by name: "expired 26, not found 1"
        return ", ".join(f"{k} {_cell(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list | tuple):  # e.g. a [min, max] range
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return _cell(int(value))
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def write_report(report: Report, out: Path, with_plot: bool = True) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    image = None
    if with_plot:
        png = out / f"{report.scenario}.png"
        plot(report, png)
        written.append(png)
        image = png.name
    md = out / f"{report.scenario}.md"
    md.write_text(report.markdown(image))
    written.append(md)
    return written
