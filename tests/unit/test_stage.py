"""scripts/stage.sh: stage records, and a summary whose total is the run's wall time (the VM
lane runs beside the others), judged against the 60-minute limit and the 30-minute target."""

from __future__ import annotations

import subprocess
from pathlib import Path

from fortress_lab.common import REPO_ROOT

STAGE = REPO_ROOT / "scripts/stage.sh"


def _stage(timings: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(STAGE), *args],
        env={"PATH": "/usr/bin:/bin", "FORTRESS_TIMINGS": str(timings), **env},
        capture_output=True,
        text=True,
        check=False,
    )


def _rows(timings: Path, *rows: tuple[str, int, int, int, int]) -> None:
    timings.write_text("".join("\t".join(map(str, row)) + "\n" for row in rows))


def test_a_stage_is_recorded_with_its_start_time_and_exit_status(tmp_path: Path) -> None:
    timings = tmp_path / "t.tsv"
    done = _stage(timings, "fails", "30", "sh", "-c", "exit 3")
    assert done.returncode == 3
    name, start, secs, budget, rc = timings.read_text().split("\t")
    assert (name, secs, budget, rc) == ("fails", "0", "30", "3\n") and int(start) > 0
    assert _stage(timings, "--summary").returncode == 1  # a failed stage fails the run


def test_the_total_is_wall_time_not_the_sum_of_side_by_side_stages(tmp_path: Path) -> None:
    timings = tmp_path / "t.tsv"
    _rows(timings, ("a", 1000, 600, 700, 0), ("vm", 1000, 1500, 1600, 0), ("b", 1600, 700, 800, 0))
    done = _stage(timings, "--summary")
    assert done.returncode == 0, done.stdout
    total = next(line for line in done.stdout.splitlines() if line.startswith("total"))
    assert total.split()[1] == "1500", total  # 1000 .. 2500; the stages add up to 2800
    assert "add up to 46 min" in total
    assert "target" not in done.stdout


def test_over_budget_fails_over_target_warns_over_limit_fails(tmp_path: Path) -> None:
    timings = tmp_path / "t.tsv"
    _rows(timings, ("slow", 0, 61, 60, 0))
    done = _stage(timings, "--summary")
    assert done.returncode == 1 and "FAILED (over its budget)" in done.stdout
    _rows(timings, ("long", 0, 1900, 2000, 0))
    done = _stage(timings, "--summary")
    assert done.returncode == 0 and "100 s over the 30-minute target" in done.stdout
    done = _stage(timings, "--summary", FORTRESS_TEST_LIMIT="1800")
    assert done.returncode == 1 and "over the 1800 s limit" in done.stdout
