"""``python -m concurry`` (SPEC §14): the tour runs, shows every mode, a pool bar and a table."""

from __future__ import annotations

import subprocess
import sys

import pytest

from concurry.__main__ import available_modes


@pytest.mark.timeout(90)
def test_the_tour_runs_every_available_mode_quickly():
    # SPEC §14: under 30 s. The tour itself takes about a second; the limit is the spec's.
    proc = subprocess.run([sys.executable, "-m", "concurry"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for mode, missing in available_modes().items():
        if missing is None:
            assert f"{mode:<9} 'hi, Bob (call 2)'" in out, f"mode {mode} did not run the worker"
            assert f"concurry mode='{mode}'" in out, f"no overhead row for mode {mode}"
        else:
            assert "not available" in out or "skipped" in out
    assert "pool" in out and "40/40" in out, "the pool's progress bar reached the end"
    assert "ran on 4 workers" in out
    # the limits section: the pool shared 2 connections, and the rate made some calls wait
    limits_line = next(line for line in out.splitlines() if line.startswith("30 calls:"))
    assert "at most 2 ran at once" in limits_line
    assert int(limits_line.split(", ")[-1].split()[0]) >= 5  # 30 calls, a burst of 20 at 20/s
    assert "concurrent.futures ThreadPool(1)" in out and "us/call" in out
    assert "Tour finished in" in out
