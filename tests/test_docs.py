"""The user guide's examples run as written, as scripts, and print what their comments say.

The code blocks are extracted with mktestdocs' public ``grab_code_blocks``: a small, maintained
library that gives exactly the fenced blocks of a Markdown page, and leaves running them to us,
so each block runs as its own script in a fresh interpreter, as a user who copies it would run
it (a worker class then lives in that script's ``__main__``, as in a user's script).

Convention for docs/*.md (every page follows it):
- a fenced block with language ``python`` is run, unless its first line is a comment starting
  with ``# not run:`` followed by the reason;
- each ``print(...)  # <expected>`` line promises one output line: the script's stdout must be
  exactly the promised lines, in order (a block that promises nothing must still exit 0);
- a block containing ``mode="ray"`` runs on the session's Ray (it joins it via RAY_ADDRESS).

The site itself must build with ``mkdocs build --strict`` (broken links and references fail).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mktestdocs import grab_code_blocks

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
NOT_RUN = "# not run:"
PROMISE = re.compile(r"^\s*print\(.*\)\s+# (\S.*)$", re.MULTILINE)


def runnable_blocks(page: Path) -> list[str]:
    """The page's ``python`` blocks that are meant to run."""
    blocks = grab_code_blocks(page.read_text(), lang="python")
    return [b for b in blocks if not b.lstrip().startswith(NOT_RUN)]


def _cases() -> list:
    cases = []
    for page in PAGES:
        for index, block in enumerate(runnable_blocks(page)):
            marks = [pytest.mark.guide_example, *([pytest.mark.ray] if 'mode="ray"' in block else [])]
            cases.append(pytest.param(page.name, index, marks=marks, id=f"{page.stem}-{index}"))
    return cases


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def test_the_guide_has_pages():
    assert len(PAGES) >= 5, [p.name for p in PAGES]


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_every_page_has_a_runnable_example(page):
    assert runnable_blocks(page), f"{page.name} has no runnable python example"


@pytest.mark.parametrize(("page", "index"), _cases())
def test_example_runs_and_prints_what_it_says(page, index, tmp_path):
    source = runnable_blocks(DOCS / page)[index]
    promised = [line.strip() for line in PROMISE.findall(source)]
    script = tmp_path / "example.py"
    script.write_text(source)
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=_env()
    )
    assert proc.returncode == 0, f"{page} block {index} failed:\n{proc.stderr}"
    assert proc.stdout.splitlines() == promised, f"{page} block {index}:\n{source}"


@pytest.mark.guide_build
def test_site_builds_strict(tmp_path):
    """The site builds without a warning, from a copy of docs/ whose charts and tables the real
    renderer made from its built-in sample results (so the build does not depend on a benchmark
    run), as ``make docs`` makes them from the last ``make bench``."""
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(DOCS, tmp_path / "docs", ignore=shutil.ignore_patterns("generated", "charts"))
    (tmp_path / "src").symlink_to(ROOT / "src")
    renderer = ROOT / "benchmarks" / "charts.py"
    rendered = subprocess.run(
        [sys.executable, str(renderer), "--sample", "--out-dir", str(tmp_path / "docs")],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    assert rendered.returncode == 0, rendered.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        capture_output=True,
        text=True,
        timeout=170,
        cwd=tmp_path,
        env={**_env(), "NO_MKDOCS_2_WARNING": "1"},  # Material's end-of-life banner, not a warning
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "api" / "index.html").exists()
