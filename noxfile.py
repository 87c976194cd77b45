"""The whole test suite on every Python from 3.10 to 3.13 this machine has: ``make test-pythons``.

Interpreters are found here rather than by nox, because a ``python3.X`` on PATH may be a pyenv
shim that only answers "command not found" unless that version is selected: each candidate is
run and must report its version. Looked at, in order: every ``python3.X`` on PATH, then
``$PYENV_ROOT/versions/3.X.*`` (newest patch first), then the interpreter running nox. Which were
found (and where) is printed first; a version found nowhere is skipped and reported, a found
one whose suite fails fails the run.

Each interpreter gets a virtual environment under ``.nox/`` that this file creates and installs
(``pip install -e .[dev]``); later runs reuse it and reinstall only when pyproject.toml changed.
Only pytest runs here: lint is the README's ``make test``. Extra arguments go to pytest
(``make test-pythons ARGS="-x tests/test_futures.py"``); ``nox -s 'tests(3.12)'`` runs one.
``make test-pythons SKIP=3.11`` leaves out versions already tested (``.ci/run`` skips the one
``make test`` ran on).
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import nox

VERSIONS = ("3.10", "3.11", "3.12", "3.13")
ROOT = Path(__file__).resolve().parent

nox.options.sessions = ["tests"]
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True  # we pass only interpreters that run
if hasattr(nox.options, "download_python"):
    nox.options.download_python = "never"  # never fetch an interpreter from the network


def _version_of(exe: str) -> tuple[str | None, str]:
    """``("3.X", its real path)`` if ``exe`` runs (and has venv), else ``(None, why not)``."""
    try:
        proc = subprocess.run(
            [exe, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2], sys.executable)"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, str(exc)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return None, lines[0] if lines else f"exit code {proc.returncode}"
    version, _, real = proc.stdout.strip().partition(" ")
    return version, real or exe


def _patch(path: str) -> tuple[int, ...]:
    match = re.search(r"/versions/\d+\.\d+\.(\d+)/", path)
    return (int(match.group(1)),) if match else (-1,)


def _candidates(version: str) -> list[tuple[str, str]]:
    """(path, where) pairs that may be Python ``version``, best first."""
    name = f"python{version}"
    found = []
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        exe = os.path.join(folder or ".", name)
        if os.path.isfile(exe) and os.access(exe, os.X_OK):
            found.append((exe, "PATH"))
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    pattern = os.path.join(pyenv_root, "versions", f"{version}.*", "bin", name)
    for exe in sorted(glob.glob(pattern), key=_patch, reverse=True):
        if re.fullmatch(rf"{re.escape(version)}\.\d+", Path(exe).parent.parent.name):  # not 3.13t
            found.append((exe, "pyenv"))
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        found.append((sys.executable, "running nox"))
    return found


def find_interpreters() -> tuple[dict[str, str], list[str]]:
    """``({version: path}, report lines)`` for every version in ``VERSIONS``."""
    found: dict[str, str] = {}
    report = []
    skip = set(os.environ.get("TEST_PYTHONS_SKIP", "").split())
    for version in VERSIONS:
        if version in skip:
            report.append(f"Python {version}: skipped (already tested by this run: TEST_PYTHONS_SKIP)")
            continue
        rejected = []
        for exe, where in _candidates(version):
            got, detail = _version_of(exe)
            if got == version:
                found[version] = detail
                via = "" if detail == exe else f", via {exe}"
                report.append(f"Python {version}: {detail} (from {where}{via})")
                break
            rejected.append(f"{exe} ({where}): {detail if got is None else f'is Python {got}'}")
        else:
            tried = "; ".join(rejected) or f"no python{version} on PATH or under pyenv"
            report.append(f"Python {version}: not found, skipped ({tried})")
    return found, report


FOUND, REPORT = find_interpreters()
print("test-pythons: interpreters\n  " + "\n  ".join(REPORT), file=sys.stderr, flush=True)


def _install(session: nox.Session) -> None:
    """Install concurry[dev] into the session's venv, unless pyproject.toml is unchanged."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamp = Path(session.virtualenv.location) / ".concurry-installed"
    if stamp.exists() and stamp.read_text() == digest:
        session.log("reusing the environment (pyproject.toml unchanged)")
        return
    session.run("python", "-m", "pip", "install", "-q", "--upgrade", "pip")
    session.run("python", "-m", "pip", "install", "-q", "-e", f"{ROOT}[dev]")
    stamp.write_text(digest)


if FOUND:

    @nox.session(venv_backend="venv")
    @nox.parametrize("python", list(FOUND.values()), ids=list(FOUND))
    def tests(session: nox.Session) -> None:
        """The whole pytest suite on one interpreter."""
        _install(session)
        session.run("python", "-c", "import sys; print(sys.version)")
        session.run("python", "-m", "compileall", "-q", str(ROOT / "src" / "concurry"))  # see Makefile
        session.run("python", "-m", "pytest", "-n", "2", "--dist", "loadgroup", *session.posargs)

else:

    @nox.session(python=False)
    def tests(session: nox.Session) -> None:
        """Nothing to run on: fail, saying why."""
        session.error("no Python 3.10-3.13 found:\n  " + "\n  ".join(REPORT))

