"""The README's examples run as written, as scripts, and print what their comments say."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize(
    "index",
    # a Ray example joins the session's Ray (RAY_ADDRESS), as after ray.init(address=...)
    [pytest.param(i, marks=[pytest.mark.ray] if 'mode="ray"' in b else []) for i, b in enumerate(BLOCKS)],
)
def test_readme_example_runs_and_prints_what_it_says(index, tmp_path):
    source = BLOCKS[index]
    promised = re.findall(r"print\(.*\)\s+# (\S.*)$", source, re.MULTILINE)
    script = tmp_path / "example.py"
    script.write_text(source)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert promised, "each example promises its output in a comment"
    assert proc.stdout.splitlines() == [line.strip() for line in promised]
