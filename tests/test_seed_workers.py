"""The examples of the Workers seed (``../shared/seeds/000_c5329ed8e7ebccce.txt``) run as written,
as scripts (no ``__main__`` guard), from ``tests/seed_scripts/workers_*.py``.

Where a snippet is a fragment (uses a class it does not define, calls a method that does not
exist, or never uses what it defines), the script carries the smallest completion, marked
"added" in a comment. Examples that say ``mode="process"`` run as written *and* once more with
``mode="thread"``: switching the mode is the seed's promise.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parent / "seed_scripts"
SCRIPT_TIMEOUT = 60

# script name -> regular expressions its stdout must match (all of them)
EXPECTED: dict[str, list[str]] = {
    "workers_basic_usage.py": [r"^I am Worker-1 running in PID (\d+)$"],
    "workers_switch_mode.py": [r"^I am Worker-Thread running in PID (\d+)$"],
    "workers_typed.py": [r"^Worker ready with 3 retries$"],
    "workers_pydantic.py": [],
    "workers_validate.py": [r"^result=15$"],
    "workers_composition.py": [r"^Processed None$", r"^threads left: \[\]$"],
    "workers_taskworker.py": [r"^digits=201$"],
    "workers_subclassing.py": [r"^Done$"],
    "workers_context_manager.py": [r"^stopped: worker MyWorker#\d+ is stopped"],
}

PROCESS_SCRIPTS = sorted(n for n in EXPECTED if 'mode="process"' in (SCRIPTS / n).read_text())


def run_source(path: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        cwd=cwd,
        env=env,
    )


def check_output(name: str, proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    for pattern in EXPECTED[name]:
        match = re.search(pattern, proc.stdout, re.MULTILINE)
        assert match, f"{name}: no line matching {pattern!r} in:\n{proc.stdout}\n{proc.stderr}"


def test_every_workers_script_is_covered():
    assert {p.name for p in SCRIPTS.glob("workers_*.py")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_seed_script_runs_as_written(name, tmp_path):
    proc = run_source(SCRIPTS / name, tmp_path)
    check_output(name, proc)


@pytest.mark.parametrize("name", PROCESS_SCRIPTS)
def test_process_seed_script_with_thread_mode(name, tmp_path):
    source = (SCRIPTS / name).read_text().replace('mode="process"', 'mode="thread"')
    path = tmp_path / name
    path.write_text(source)
    check_output(name, run_source(path, tmp_path))


def test_basic_usage_runs_in_a_child_process(tmp_path):
    """The seed's promise: `who_am_i` proves isolation by returning a PID other than the script's."""
    source = (SCRIPTS / "workers_basic_usage.py").read_text()
    source += "\nprint(f'script PID {os.getpid()}')\n"
    path = tmp_path / "basic_with_pid.py"
    path.write_text(source)
    proc = run_source(path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    worker_pid = re.search(r"running in PID (\d+)", proc.stdout).group(1)
    script_pid = re.search(r"script PID (\d+)", proc.stdout).group(1)
    assert worker_pid != script_pid
