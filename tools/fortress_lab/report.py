"""Sum up the JUnit XML reports of a `make test` run, and hold the claims to them.

Prints one row per report, the minutes each test area took (JUnit durations grouped by the
test's directory, and the costliest files), and a closing 'N passed, N failed, N skipped'
line. A run with a failure, an error, a skipped test or no test at all is not a pass: exit
status 1.

docs/threat-model.md names the tests that prove each mitigation, and docs/architecture.md's
claims table those that prove each claim, as `path.py::test_name` or
`path.py::test_name[param]` (the pytest node ID without the lab-host suffix testinfra adds).
Every test they name must have run and passed in this run's reports, or the run fails.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
# The documents whose claims name their tests: each named test must pass in the run.
CLAIMS = (DOCS / "threat-model.md", DOCS / "architecture.md")
_REFERENCE = re.compile(r"`((?:tests|molecule)/[\w/]+\.py)::(\w+)(\[[^\]`]+\])?`")


def count(path: Path) -> dict[str, int]:
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    root = ET.parse(path).getroot()  # noqa: S314 - our own pytest output
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    for suite in suites:
        for key in totals:
            totals[key] += int(suite.get(key, 0))
    return totals


def outcomes(reports: list[Path]) -> dict[tuple[str, str], bool]:
    """{(classname, test name): passed} of every test case in the reports."""
    seen: dict[tuple[str, str], bool] = {}
    for path in reports:
        for case in ET.parse(path).getroot().iter("testcase"):  # noqa: S314
            failed = any(case.find(tag) is not None for tag in ("failure", "error", "skipped"))
            seen[(case.get("classname", ""), case.get("name", ""))] = not failed
    return seen


def durations(reports: list[Path]) -> dict[str, float]:
    """{test file: seconds} over every test case in the reports (setup, call and teardown:
    a session fixture's cost lands on the first test that uses it)."""
    seconds: dict[str, float] = {}
    for path in reports:
        for case in ET.parse(path).getroot().iter("testcase"):  # noqa: S314
            module = case.get("classname", "")
            parts = module.split(".")
            # tests.security.test_probes(.Class) -> tests/security/test_probes.py
            while parts and not parts[-1].startswith("test_"):
                parts.pop()
            file = "/".join(parts) + ".py" if parts else module or "?"
            seconds[file] = seconds.get(file, 0.0) + float(case.get("time", 0) or 0)
    return seconds


def areas(files: dict[str, float]) -> dict[str, float]:
    """{directory: seconds}: tests/unit, tests/security, molecule/vm/tests, ..."""
    grouped: dict[str, float] = {}
    for file, secs in files.items():
        area = file.rsplit("/", 1)[0] if "/" in file else file
        grouped[area] = grouped.get(area, 0.0) + secs
    return grouped


def print_minutes(reports: list[Path], top: int = 8) -> None:
    files = durations(reports)
    print(f"\n{'TEST AREA':<40} {'MINUTES':>8}")
    for area, secs in sorted(areas(files).items(), key=lambda kv: -kv[1]):
        print(f"{area:<40} {secs / 60:>8.1f}")
    print(f"\n{'COSTLIEST TEST FILES':<52} {'MINUTES':>8}")
    for file, secs in sorted(files.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{file:<52} {secs / 60:>8.1f}")


def references(text: str) -> list[tuple[str, str, str]]:
    """(file, test, [param] or '') of every test the text names."""
    return [(m[1], m[2], m[3] or "") for m in _REFERENCE.finditer(text)]


def unproven(text: str, seen: dict[tuple[str, str], bool]) -> list[str]:
    """The references in text with no passed test case behind them (a reference without a
    parameter stands for all its parametrised cases; testinfra appends '-ansible://host')."""
    missing = []
    for file, test, param in references(text):
        classname = file.removesuffix(".py").replace("/", ".")
        name = test + param
        open_name = name[:-1] if param else name
        cases = [
            ok
            for (cls, case), ok in seen.items()
            if cls == classname
            and (case == name or case.startswith(open_name + ("-" if param else "[")))
        ]
        if not cases or not all(cases):
            why = "did not run" if not cases else "failed"
            missing.append(f"{file}::{name} ({why})")
    return missing


def main(directory: Path, *claims: Path) -> int:
    reports = sorted(directory.glob("*.xml"))
    grand = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    print(f"\n{'REPORT':<28} {'TESTS':>6} {'FAILED':>7} {'SKIPPED':>8}")
    for path in reports:
        got = count(path)
        print(
            f"{path.stem:<28} {got['tests']:>6} {got['failures'] + got['errors']:>7} "
            f"{got['skipped']:>8}"
        )
        for key in grand:
            grand[key] += got[key]
    print_minutes(reports)
    failed = grand["failures"] + grand["errors"]
    passed = grand["tests"] - failed - grand["skipped"]
    if grand["skipped"]:
        print("skipped tests make this run a failure: every test must run on CI.")
    if not grand["tests"]:
        print(f"no test reports in {directory}: nothing was proven.")
    print(f"{passed} passed, {failed} failed, {grand['skipped']} skipped")
    unproved, seen = 0, outcomes(reports)
    for doc in claims or CLAIMS:
        text = doc.read_text()
        missing = unproven(text, seen)
        print(f"{doc.name}: {len(references(text))} named tests, {len(missing)} unproven")
        for line in missing:
            print(f"  not proven by this run: {line}")
        unproved += len(missing)
    ok = grand["tests"] and not failed and not grand["skipped"] and not unproved
    return 0 if ok else 1
