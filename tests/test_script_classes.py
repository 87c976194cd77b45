"""Worker classes defined in a script (no ``__main__`` guard) travel by value to process
workers, with whatever they carry: methods decorated by ``morphic.validate``,
``pydantic.validate_call`` and ``functools`` decorators, ``abc`` bases, dataclasses, pydantic and
``morphic.Typed`` models, class attributes referring to the class itself, and module-level
handles, builders and ``@task`` functions (the library's own objects must not be dragged along).

Each script in ``tests/class_scripts/`` reads its options (mode, start method, pool size) from
``CONCURRY_SCRIPT_OPTIONS``; the classes must live in ``__main__``, so they run as scripts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parent / "class_scripts"
SCRIPT_TIMEOUT = 90

# script name -> lines its stdout must contain (regular expressions, each a whole line)
EXPECTED: dict[str, list[str]] = {
    "morphic_validate.py": [r"result=15", r"elsewhere=True"],
    "pydantic_validate_call.py": [r"result=15", r"strict refused: 1 error", r"task=42"],
    "functools_decorators.py": [
        r"double=\('traced', 'double', 8\)",
        r"everything=\(16, 8, 42, 'str', 'other', 'an int', 'something'\)",
        r"half=9",
        r"names=\('double', 8\)",
    ],
    "abc_abstract.py": [r"describe='Square area 18'", r"checks=\(True, True\)"],
    "dataclass_worker.py": [r"add=12", r"fields=\['start', 'step', 'seen'\]"],
    "self_reference.py": [r"lookup='Registry:Registry'", r"identity=\(True, True\)"],
    "module_level_handles.py": [
        r"builder=True",
        r"task=2",
        r"handle refused: worker handle <thread worker Helper#1 \(running\)> belongs to process \d+: "
        r"a handle works only in the process that created it.*",
        r"still serving=3",
    ],
    "worker_and_basemodel.py": [r"greet='hello Ada! hello Ada!'"],
    "worker_basemodel.py": [r"scale=20", r"kinds=\(True, True, \['name', 'settings'\]\)"],
    "morphic_typed.py": [r"attempts=5"],
}

SPAWN = {"mode": "process"}
POOL = {"mode": "process", "max_workers": 2}
VARIANTS = {
    "spawn": SPAWN,
    "fork": {"mode": "process", "mp_context": "fork"},
    "forkserver": {"mode": "process", "mp_context": "forkserver"},
    "pool-of-2": POOL,
    "pool-of-2-forkserver": {**POOL, "mp_context": "forkserver"},
    "on-demand": {"mode": "process", "on_demand": True, "max_workers": 2},
}
# Every script in a spawned process and a pool of 2; a few in every other start method and pool kind.
EVERY_VARIANT = ("morphic_validate.py", "pydantic_validate_call.py", "module_level_handles.py")
CASES = [
    (name, variant)
    for name in sorted(EXPECTED)
    for variant in VARIANTS
    if variant in ("spawn", "pool-of-2") or name in EVERY_VARIANT
]


def run_script(name: str, options: dict, cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "CONCURRY_SCRIPT_OPTIONS": json.dumps(options),
    }
    return subprocess.run(
        [sys.executable, str(SCRIPTS / name)],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        cwd=cwd,
        env=env,
    )


def test_every_class_script_is_covered():
    assert {p.name for p in SCRIPTS.glob("*.py")} == set(EXPECTED)


@pytest.mark.timeout(SCRIPT_TIMEOUT + 30)
@pytest.mark.parametrize(("name", "variant"), CASES)
def test_script_class_runs_in_process_mode(name, variant, tmp_path):
    proc = run_script(name, VARIANTS[variant], tmp_path)
    assert proc.returncode == 0, f"{name} ({variant}) failed:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    for pattern in EXPECTED[name]:
        assert re.search(f"^{pattern}$", proc.stdout, re.MULTILINE), (
            f"{name} ({variant}): no line matching {pattern!r} in:\n{proc.stdout}\n{proc.stderr}"
        )
