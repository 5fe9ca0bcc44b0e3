"""``make install`` (the first step of ``make demo`` and ``make test``): it says what it is
doing, keeps pip's and setuptools' warnings out of the user's way in ``.venv/install.log``,
and shows that log when the install fails (issue #14).

Run against a stand-in for ``python3`` (``PYTHON=`` and ``VENV=`` are the Makefile's own
knobs): the stand-in makes the venv and plays pip, printing the setuptools warning block
the real install prints, so the test needs no network and takes no minute."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_PYTHON = """#!/bin/sh
# Stands in for python3: the version check passes, `-m venv DIR` copies this script to
# DIR/bin/python, and `-m pip` prints what setuptools prints (and fails when told to).
case "$1" in
  -c) exit 0 ;;
  -m) case "$2" in
        venv) mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && exit 0 ;;
        pip) echo "Obtaining file:///work/nurture"
             echo "********************************************************************************" >&2
             echo "SetuptoolsDeprecationWarning: License classifiers are deprecated." >&2
             echo "********************************************************************************" >&2
             if [ -n "$FAKE_PIP_FAILS" ]; then echo "ERROR: No matching distribution found for sqlmodel" >&2; exit 1; fi
             exit 0 ;;
      esac ;;
esac
exit 2
"""


@pytest.fixture
def fake_python(tmp_path: Path) -> Path:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    path = tmp_path / "python3"
    path.write_text(FAKE_PYTHON)
    path.chmod(0o755)
    return path


#: Variables a calling make or tests.clockshift put in the environment.
_CALLER_VARIABLES = frozenset({"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "LD_PRELOAD",
                               "PYTHON", "VENV", "SHIFT_TO", "SHIFTED_TESTS"})


def make_env(**extra: str) -> dict[str, str]:
    """The environment for a make under test: without a calling make's variables (``make
    test-shifted SHIFTED_TESTS=tests`` exports them and passes them down in MAKEFLAGS, and
    they would override the Makefile's defaults under test) and without the moved wall clock
    of tests.clockshift (make compares file times with the real clock and warns of clock
    skew when the files look to be from the future)."""
    env = {name: value for name, value in os.environ.items()
           if name not in _CALLER_VARIABLES and not name.startswith("FAKETIME")}
    return {**env, **extra}


def make_install(fake_python: Path, venv: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), f"PYTHON={fake_python}", f"VENV={venv}", "install"],
        capture_output=True, text=True, timeout=60, env=make_env(**env),
    )


def test_install_says_what_it_does_and_keeps_warnings_in_the_log(fake_python, tmp_path):
    venv = tmp_path / "venv"

    result = make_install(fake_python, venv)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"installing nurture into {venv} (first run only, ~1 min; pip's log: {venv}/install.log)",
        "installed",
    ]
    assert result.stderr == ""
    log = (venv / "install.log").read_text()
    assert log.count("SetuptoolsDeprecationWarning") == 3  # pip itself, nurture, the CDNOW wheel download
    # Installed: a second run has nothing to do.
    again = make_install(fake_python, venv)
    assert again.returncode == 0 and "installing" not in again.stdout and again.stderr == ""


def test_a_failed_install_shows_the_log_and_fails(fake_python, tmp_path):
    venv = tmp_path / "venv"

    result = make_install(fake_python, venv, FAKE_PIP_FAILS="1")

    assert result.returncode != 0
    assert "ERROR: No matching distribution found for sqlmodel" in result.stdout
    assert f"error: installing nurture failed; the whole log is {venv}/install.log" in result.stderr
    assert not (venv / ".installed-stamp").exists()  # the next run tries again


def test_make_test_runs_the_send_paths_again_inside_evening_quiet_hours():
    """Issue #12: the suite once failed every evening because workers read the real clock.
    ``make test`` must keep rerunning the send paths with the wall clock moved into the
    default quiet hours (21:00-08:00 Asia/Shanghai); dropping that pass must fail here."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry_run = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, check=True,
                             env=make_env()).stdout
    commands = dry_run.splitlines()
    suite = next(i for i, line in enumerate(commands) if line.endswith("pytest -q -p no:cacheprovider tests"))
    shifted = [line for line in commands[suite:] if "-m tests.clockshift" in line]
    assert shifted, "make test no longer runs the shifted pass (tests.clockshift)"
    hour, minute = (int(part) for part in shifted[0].split("tests.clockshift ")[1].split()[0].split(":"))
    assert "--zone Asia/Shanghai" in shifted[0]
    assert hour >= 21 or hour < 8, "the shifted pass must fall inside the default quiet hours"
    # The files of the four tests that failed every evening, and the send paths added since.
    for path in ("tests/e2e/test_spine_sqlite.py", "tests/workers/cli/test_sending.py",
                 "tests/integration/test_distributed.py", "tests/integration/test_rate_limit_processes.py",
                 "tests/workers/cli/test_reports.py", "tests/workers/cli/test_runreport.py",
                 "tests/workers/cli/test_campaigns.py", "tests/e2e/test_test_send.py"):
        assert path in shifted[0], f"make test's shifted pass no longer runs {path}"
