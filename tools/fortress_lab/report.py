"""Sum up the JUnit XML reports of a `make test` run.

Prints one row per report and a closing 'N passed, N failed, N skipped' line. A run with a
failure, an error, a skipped test or no test at all is not a pass: exit status 1.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path


def count(path: Path) -> dict[str, int]:
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    root = ET.parse(path).getroot()  # noqa: S314 - our own pytest output
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    for suite in suites:
        for key in totals:
            totals[key] += int(suite.get(key, 0))
    return totals


def main(directory: Path) -> int:
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
    failed = grand["failures"] + grand["errors"]
    passed = grand["tests"] - failed - grand["skipped"]
    if grand["skipped"]:
        print("skipped tests make this run a failure: every test must run on CI.")
    if not grand["tests"]:
        print(f"no test reports in {directory}: nothing was proven.")
    print(f"{passed} passed, {failed} failed, {grand['skipped']} skipped")
    return 0 if grand["tests"] and not failed and not grand["skipped"] else 1
