"""Type checkers are told the truth: mypy (with ``concurry.mypy_plugin``) accepts README-style
usage (tests/typing/usage.py, whose ``assert_type`` lines pin what it infers) and reports each
deliberately wrong use in tests/typing/wrong.py, on the line whose comment says what it must be."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import concurry

TYPING = Path(__file__).parent / "typing"
USAGE, WRONG = TYPING / "usage.py", TYPING / "wrong.py"
ERROR = re.compile(r"^(?P<path>.+?):(?P<line>\d+): error: (?P<text>.*)$")

# Only the public surface is checked: errors inside concurry's own modules are not reported.
CONFIG = """\
[mypy]
plugins = concurry.mypy_plugin
follow_imports = silent
show_error_codes = True
"""


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[int, list[str]]]:
    """One mypy run over both files (fresh cache), as {file name: {line: [messages]}}."""
    tmp = tmp_path_factory.mktemp("mypy")
    (tmp / "mypy.ini").write_text(CONFIG)
    src = str(Path(concurry.__file__).parent.parent)  # the concurry under test, not an installed one
    env = {**os.environ, "MYPYPATH": src, "PYTHONPATH": src}
    command = [sys.executable, "-m", "mypy", "--config-file", str(tmp / "mypy.ini")]
    command += ["--cache-dir", str(tmp / "cache"), "--no-error-summary", str(USAGE), str(WRONG)]
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240, cwd=tmp)
    assert run.returncode in (0, 1), f"mypy did not run:\n{run.stdout}\n{run.stderr}"
    errors: dict[str, dict[int, list[str]]] = {USAGE.name: {}, WRONG.name: {}}
    for line in run.stdout.splitlines():
        match = ERROR.match(line)
        if match:
            name = Path(match["path"]).name
            assert name in errors, f"error outside the checked files: {line}"
            errors[name].setdefault(int(match["line"]), []).append(match["text"])
    return errors


@pytest.mark.timeout(300)
def test_readme_style_usage_passes_mypy(mypy_errors):
    assert mypy_errors[USAGE.name] == {}


def _expected() -> dict[int, str]:
    marks = {}
    for number, line in enumerate(WRONG.read_text().splitlines(), 1):
        if "# E: " in line:
            marks[number] = line.split("# E: ", 1)[1].strip()
    return marks


@pytest.mark.timeout(300)
def test_wrong_uses_fail_mypy_on_their_lines(mypy_errors):
    expected, found = _expected(), mypy_errors[WRONG.name]
    assert len(expected) >= 10
    for number, text in expected.items():
        messages = found.get(number, [])
        assert any(text.lower() in message.lower() for message in messages), (
            f"wrong.py:{number}: expected an error containing {text!r}, got {messages}"
        )
    assert set(found) == set(expected), (
        f"unexpected errors: { {n: found[n] for n in set(found) - set(expected)} }"
    )


@pytest.mark.timeout(300)
def test_calling_a_worker_class_is_typed_as_a_handle(mypy_errors):
    # the README's first example used to fail: "type[Counter]" has no attribute "init"
    messages = [m for ms in mypy_errors[WRONG.name].values() for m in ms]
    assert any('expression has type "WorkerHandle", variable has type "Counter"' in m for m in messages)
