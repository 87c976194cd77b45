"""Ready to publish: the sdist and wheel build, pass ``twine check``, carry the right files and
metadata, and the wheel installed into a fresh virtual environment runs the tour.

The builds run without isolation when hatchling is importable (it is in the dev extra): no trip to
the package index, and a second or two. Otherwise ``build`` fetches hatchling itself. Installing
the wheel into the fresh environment takes its dependencies from the package index.
"""

from __future__ import annotations

import email
import email.message
import importlib.metadata
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

import concurry

ROOT = pathlib.Path(__file__).resolve().parents[1]
# what the sdist holds at its top level: the package, its tests and the project's papers (hatchling
# always adds .gitignore, which lets a later build from the unpacked sdist skip the same files)
SDIST_TOP = {
    "src",
    "tests",
    "README.md",
    "CHANGELOG.md",
    "LICENSE",
    "pyproject.toml",
    "PKG-INFO",
    ".gitignore",
}

# the builds are shared by this module's tests: keep them in one xdist process
pytestmark = pytest.mark.xdist_group("packaging")


def _clean_env() -> dict[str, str]:
    """The environment of a user's shell: no PYTHONPATH onto this checkout, no joined Ray."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "RAY_ADDRESS"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def _build(project: pathlib.Path, outdir: pathlib.Path, *targets: str) -> None:
    isolation = ["--no-isolation"] if importlib.util.find_spec("hatchling") else []
    proc = subprocess.run(
        [sys.executable, "-m", "build", *isolation, *targets, "--outdir", str(outdir), str(project)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=outdir,
        env=_clean_env(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _wheel_metadata(wheel: pathlib.Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_string(zf.read(name).decode())


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> tuple[pathlib.Path, pathlib.Path]:
    """``python -m build`` of this checkout: (sdist, wheel). The wheel is built from the sdist,
    so the sdist is known to be complete."""
    outdir = tmp_path_factory.mktemp("dist")
    _build(ROOT, outdir)
    (sdist,) = outdir.glob("*.tar.gz")
    (wheel,) = outdir.glob("*.whl")
    return sdist, wheel


def test_version_matches_the_installed_distribution():
    # the dev install is editable: its metadata must agree with the package it points at
    assert concurry.__version__ == importlib.metadata.version("concurry")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_version_has_one_source(tmp_path):
    # a copy of the project with another __version__ builds a wheel of that version
    project = tmp_path / "project"
    project.mkdir()
    for name in ["pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md"]:
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__"))
    init = project / "src" / "concurry" / "__init__.py"
    line = f'__version__ = "{concurry.__version__}"'
    assert line in init.read_text()
    init.write_text(init.read_text().replace(line, '__version__ = "9.8.7"'))
    (tmp_path / "out").mkdir()
    _build(project, tmp_path / "out", "--wheel")
    (wheel,) = (tmp_path / "out").glob("*.whl")
    assert wheel.name == "concurry-9.8.7-py3-none-any.whl"
    assert _wheel_metadata(wheel)["Version"] == "9.8.7"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_twine_accepts_the_sdist_and_the_wheel(dists):
    proc = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, dists)],
        capture_output=True,
        text=True,
        timeout=120,
        env=_clean_env(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASSED") == 2, proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_wheel_holds_the_typed_package_its_license_and_metadata(dists):
    _, wheel = dists
    assert wheel.name == f"concurry-{concurry.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    shipped = {p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src" / "concurry").rglob("*.py")}
    assert shipped <= names, sorted(shipped - names)
    assert "concurry/py.typed" in names
    assert f"concurry-{concurry.__version__}.dist-info/licenses/LICENSE" in names
    assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n]
    meta = _wheel_metadata(wheel)
    assert meta["Version"] == concurry.__version__
    assert meta["License-Expression"] == "MIT"
    assert meta["Requires-Python"] == ">=3.10"
    assert meta["Author"] == "Concurry maintainers"
    assert meta["Description-Content-Type"] == "text/markdown"
    classifiers = meta.get_all("Classifier")
    assert "Typing :: Typed" in classifiers
    for minor in range(10, 14):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_sdist_holds_the_project_and_no_local_state(dists):
    sdist, _ = dists
    top = f"concurry-{concurry.__version__}"
    with tarfile.open(sdist) as tf:
        names = tf.getnames()
        changelog = tf.extractfile(f"{top}/CHANGELOG.md").read().decode()  # type: ignore[union-attr]
    assert {n.split("/")[0] for n in names} == {top}
    # nothing of .venv, .nox, benchmarks' results, a built site, dist/ or caches
    assert {n.split("/")[1] for n in names if n.count("/") >= 1} == SDIST_TOP
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    for name in ["LICENSE", "README.md", "src/concurry/py.typed", "src/concurry/__init__.py"]:
        assert f"{top}/{name}" in names
    assert f"## [{concurry.__version__}]" in changelog


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_the_wheel_installed_in_a_fresh_venv_runs_the_tour(dists, tmp_path):
    _, wheel = dists
    venv = tmp_path / "venv"
    env = _clean_env()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120, env=env)
    python = venv / "bin" / "python"
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    neutral = tmp_path / "elsewhere"  # no concurry/ or src/ here to import by accident
    neutral.mkdir()
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m, pathlib, concurry; "
            "print(concurry.__file__); print(concurry.__version__, m.version('concurry')); "
            "print((pathlib.Path(concurry.__file__).parent / 'py.typed').is_file())",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=neutral,
        env=env,
    )
    assert probe.returncode == 0, probe.stderr
    where, versions, typed = probe.stdout.splitlines()
    assert pathlib.Path(where).is_relative_to(venv), where
    assert versions == f"{concurry.__version__} {concurry.__version__}"
    assert typed == "True"

    tour = subprocess.run(
        [str(python), "-m", "concurry"], capture_output=True, text=True, timeout=180, cwd=neutral, env=env
    )
    assert tour.returncode == 0, tour.stdout + tour.stderr
    out = tour.stdout
    lines = out.splitlines()
    assert lines[0].startswith(f"concurry {concurry.__version__} tour - Python ")
    for heading in [
        "1. One worker class, every mode",
        "2. A pool of 4 thread workers, 40 calls, with a progress bar",
        "3. Shared limits: 4 workers, 2 connections, 20 requests/s",
        "4. Per-call overhead on this machine",
    ]:
        assert heading in lines, f"no heading {heading!r} in:\n{out}"
    for mode in ["sync", "thread", "asyncio", "process"]:
        assert f"{mode:<9} 'hi, Bob (call 2)'" in out, f"mode {mode} did not run the worker"
    # Ray is not in that environment: the tour says how to get it, and runs the rest
    (ray_line,) = [line for line in lines if line.startswith("ray ")]
    assert "not available" in ray_line and "pip install 'concurry[ray]'" in ray_line, ray_line
    assert "Starting Ray" not in out
    assert lines[-1].startswith("Tour finished in ")
