"""One pytest step of .ci/run, reported honestly: "ran" only when a test ran.

    python .ci/pytest_step.py LABEL SECONDS [PYTEST ARGUMENTS...]

Runs pytest (under this interpreter) with the arguments for at most SECONDS;
then interrupts it as Ctrl-C does, so its cleanup (``finally``, fixtures)
runs, and kills it if it is still there a minute later. Its own output passes
through; then one line, read from its JUnit XML, says what happened:

    ci: ran LABEL: 1 passed
    ci: skipped LABEL: <pytest's reason>
    ci: LABEL did not run: pytest collected no test (exit 4)
    ci: LABEL timed out after SECONDS s

Exit status 0 when pytest passed or skipped what it collected, 1 otherwise.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

GRACE_S = 60  # after the interrupt, before the kill


def outcomes(junit_xml: Path) -> tuple[Counter[str], list[str]]:
    """Each test's outcome (passed, failed, skipped), and the reasons of the skipped."""
    counts: Counter[str] = Counter()
    reasons: list[str] = []
    for case in ET.parse(junit_xml).iter("testcase"):
        skipped = case.find("skipped")
        if skipped is not None:
            counts["skipped"] += 1
            reasons.append(skipped.get("message", "no reason given"))
        elif case.find("failure") is not None or case.find("error") is not None:
            counts["failed"] += 1
        else:
            counts["passed"] += 1
    return counts, reasons


def summary(label: str, code: int, counts: Counter[str], reasons: list[str]) -> str:
    if not counts:
        return f"ci: {label} did not run: pytest collected no test (exit {code})"
    if counts.keys() == {"skipped"}:
        return f"ci: skipped {label}: {'; '.join(dict.fromkeys(reasons))}"
    told = [f"{counts[o]} {o}" for o in ("passed", "failed") if counts[o]]
    if counts["skipped"]:
        told.append(f"{counts['skipped']} skipped ({'; '.join(dict.fromkeys(reasons))})")
    return f"ci: ran {label}: {', '.join(told)}"


def run(label: str, seconds: float, args: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        junit_xml = Path(tmp) / "junit.xml"
        command = [sys.executable, "-m", "pytest", *args, "-rs", f"--junitxml={junit_xml}"]
        proc = subprocess.Popen(command)
        try:
            code = proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            print(f"ci: {label} timed out after {seconds:g} s", flush=True)
            return 1
        counts, reasons = outcomes(junit_xml) if junit_xml.exists() else (Counter(), [])
    print(summary(label, code, counts, reasons), flush=True)
    return 0 if code == 0 and counts else 1


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(run(sys.argv[1], float(sys.argv[2]), sys.argv[3:]))
