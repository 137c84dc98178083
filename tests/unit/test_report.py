"""fortress_lab.report: the run summary and the threat model's hold on it."""

from __future__ import annotations

from pathlib import Path

from fortress_lab import report
from fortress_lab.common import REPO_ROOT

JUNIT = """<?xml version="1.0"?>
<testsuites><testsuite name="pytest" tests="4" failures="1" errors="0" skipped="0">
<testcase classname="tests.security.test_probes" name="test_probe[core_pattern]"/>
<testcase classname="tests.security.test_probes" name="test_probe[kcore]"><failure/></testcase>
<testcase classname="molecule.vm.tests.test_20_vm_outer"
          name="test_outer_apparmor[ansible://fortress-mol-vm]"/>
<testcase classname="molecule.outer_dind.tests.test_10_outer"
          name="test_caps[tenant-a-ansible://fortress-mol-outer]"/>
</testsuite></testsuites>
"""


def write(tmp_path: Path, doc: str, junit: str = JUNIT) -> tuple[Path, Path]:
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "run.xml").write_text(junit)
    (tmp_path / "tm.md").write_text(doc)
    return tmp_path / "reports", tmp_path / "tm.md"


def test_named_tests_that_passed_prove_their_rows(tmp_path: Path) -> None:
    seen = report.outcomes([write(tmp_path, "")[0] / "run.xml"])
    doc = (
        "`tests/security/test_probes.py::test_probe[core_pattern]` and "
        "`molecule/vm/tests/test_20_vm_outer.py::test_outer_apparmor` and "
        "`molecule/outer_dind/tests/test_10_outer.py::test_caps[tenant-a]`"
    )
    assert len(report.references(doc)) == 3
    assert report.unproven(doc, seen) == []


def test_a_failed_a_missing_or_a_misspelt_test_is_unproven(tmp_path: Path) -> None:
    seen = report.outcomes([write(tmp_path, "")[0] / "run.xml"])
    doc = (
        "`tests/security/test_probes.py::test_probe[kcore]` "
        "`tests/security/test_probes.py::test_probe` "
        "`tests/security/test_probes.py::test_probe[core]` "
        "`tests/security/test_nothing.py::test_x`"
    )
    assert report.unproven(doc, seen) == [
        "tests/security/test_probes.py::test_probe[kcore] (failed)",
        "tests/security/test_probes.py::test_probe (failed)",
        "tests/security/test_probes.py::test_probe[core] (did not run)",
        "tests/security/test_nothing.py::test_x (did not run)",
    ]


def test_the_run_fails_when_the_threat_model_names_an_unproven_test(tmp_path: Path) -> None:
    green = JUNIT.replace('failures="1"', 'failures="0"').replace("<failure/>", "")
    reports, doc = write(tmp_path, "`tests/security/test_probes.py::test_probe`", green)
    assert report.main(reports, doc) == 0
    doc.write_text("`tests/security/test_probes.py::test_probe` `tests/x.py::test_gone`")
    assert report.main(reports, doc) == 1


def test_minutes_are_grouped_by_test_file_and_area(tmp_path: Path) -> None:
    junit = """<?xml version="1.0"?>
<testsuites><testsuite name="pytest" tests="4">
<testcase classname="tests.security.test_probes" name="test_probe[a]" time="60.5"/>
<testcase classname="tests.security.test_probes" name="test_probe[b]" time="59.5"/>
<testcase classname="tests.security.test_faults.TestKill" name="test_kill" time="30"/>
<testcase classname="molecule.vm.tests.test_20_vm_outer" name="test_x[ansible://h]" time="90"/>
</testsuite></testsuites>
"""
    reports, _ = write(tmp_path, "", junit)
    files = report.durations([reports / "run.xml"])
    assert files == {
        "tests/security/test_probes.py": 120.0,
        "tests/security/test_faults.py": 30.0,
        "molecule/vm/tests/test_20_vm_outer.py": 90.0,
    }
    assert report.areas(files) == {"tests/security": 150.0, "molecule/vm/tests": 90.0}


def test_every_test_the_claims_name_is_defined_where_they_say() -> None:
    # A misspelt or moved name would only show on CI, after the full run: catch it here.
    for doc in report.CLAIMS:
        refs = report.references(doc.read_text())
        assert refs, doc
        for file, test, _param in refs:
            source = REPO_ROOT / file
            assert source.is_file() and f"def {test}(" in source.read_text(), (doc.name, file, test)
