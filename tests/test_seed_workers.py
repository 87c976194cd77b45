"""The examples of the Workers seed (``../shared/seeds/000_c5329ed8e7ebccce.txt``) run as written,
as scripts (no ``__main__`` guard), from ``tests/seed_scripts/workers_*.py``.

Where a snippet is a fragment (uses a class it does not define, calls a method that does not
exist, or never uses what it defines), the script carries the smallest completion, marked
"added" in a comment. Each example runs as written *and* in every mode (sync, thread, asyncio,
process, pools of 2, on-demand pools): switching the mode is the seed's promise.
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
    "workers_typed.py": [r"Worker ready with 3 retries"],  # a pool's two workers may print at once
    "workers_pydantic.py": [],
    "workers_validate.py": [r"^result=15$"],
    "workers_composition.py": [r"^Processed None$", r"^threads left: \[\]$"],
    "workers_taskworker.py": [r"^digits=201$"],
    "workers_subclassing.py": [r"^Done$"],
    "workers_context_manager.py": [r"^stopped: (worker MyWorker|pool MyWorker-pool)#\d+ is stopped"],
}
# An on-demand pool creates a worker only when a call arrives: this example makes no call.
NO_OUTPUT_ON_DEMAND = {"workers_typed.py"}

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


def check_output(name: str, proc: subprocess.CompletedProcess, expected: list[str] | None = None) -> None:
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    for pattern in EXPECTED[name] if expected is None else expected:
        match = re.search(pattern, proc.stdout, re.MULTILINE)
        assert match, f"{name}: no line matching {pattern!r} in:\n{proc.stdout}\n{proc.stderr}"


def test_every_workers_script_is_covered():
    assert {p.name for p in SCRIPTS.glob("workers_*.py")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_seed_script_runs_as_written(name, tmp_path):
    proc = run_source(SCRIPTS / name, tmp_path)
    check_output(name, proc)


# Every mode a worker script can run in: the script's mode="..." literals are substituted
# (the only edit), with the pool options added where the script does not already pass them.
MODE_VARIANTS: dict[str, tuple[str, dict[str, object]]] = {
    "sync": ("sync", {}),
    "thread": ("thread", {}),
    "asyncio": ("asyncio", {}),
    "process": ("process", {}),
    "thread-pool-of-2": ("thread", {"max_workers": 2}),
    "process-pool-of-2": ("process", {"max_workers": 2}),
    "thread-on-demand": ("thread", {"on_demand": True, "max_workers": 2}),
    "process-on-demand": ("process", {"on_demand": True, "max_workers": 2}),
}
_MODE = re.compile(r'mode="\w+"')


def in_mode(source: str, variant: str) -> str:
    """``source`` with every ``mode="..."`` set to the variant's mode and its options added."""
    mode, extra = MODE_VARIANTS[variant]
    added = "".join(f", {k}={v!r}" for k, v in extra.items() if f"{k}=" not in source)
    assert _MODE.search(source), "the script names no mode to substitute"
    return _MODE.sub(f'mode="{mode}"{added}', source)


@pytest.mark.timeout(SCRIPT_TIMEOUT + 30)
@pytest.mark.parametrize("variant", sorted(MODE_VARIANTS))
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_seed_script_in_every_mode(name, variant, tmp_path):
    path = tmp_path / name
    path.write_text(in_mode((SCRIPTS / name).read_text(), variant))
    on_demand = variant.endswith("on-demand") and name in NO_OUTPUT_ON_DEMAND
    check_output(name, run_source(path, tmp_path), [] if on_demand else None)


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
