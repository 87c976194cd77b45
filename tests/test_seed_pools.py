"""The examples of the Worker Pools seed (``../shared/seeds/003_55d149e3b714ce5f.txt``) run as
written, as scripts (no ``__main__`` guard), from ``tests/seed_scripts/pools_*.py``.

Two snippets of the seed are fragments using ``MyWorker`` without defining it; for those the
test prepends ``MY_WORKER`` (the smallest such class). Some runs append a few checks after the
unchanged snippet (``POSTLUDE_*``) so the test sees the pool actually worked. Each example also
runs in every mode a pool has (thread, process, and on-demand pools of both): only its
``mode="..."`` changes (and ``on_demand=True`` is added for the on-demand runs).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from test_seed_workers import in_mode

SCRIPTS = Path(__file__).parent / "seed_scripts"

# Prepended to fragments that reference MyWorker without defining it (the seed never shows it).
MY_WORKER = '''\
from concurry import worker


@worker
class MyWorker:
    def process(self, x):
        return x * 2

'''

POSTLUDE_BASIC = '''
assert results == [i * i for i in range(100)], results
print("results ok")
'''

POSTLUDE_QUEUES = '''
futures = [pool.process(i) for i in range(200)]
assert [f.result() for f in futures] == [2 * i for i in range(200)]
stats = pool.pool_stats()
assert stats["max_queued_tasks"] == 10 and len(stats["workers"]) == 5, stats
print("queues ok")
'''

POSTLUDE_ON_DEMAND = '''
import os

pids = {pool.process(3).result(), pool.process(4).result()}
assert pids == {6, 8}
stats = pool.pool_stats()
assert stats["on_demand"] and stats["max_workers"] == 10 and stats["workers_created"] == 2, stats
print("on demand ok")
'''


def run_script(tmp_path: Path, name: str, source: str) -> subprocess.CompletedProcess:
    path = tmp_path / name
    path.write_text(source)
    proc = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def seed(name: str) -> str:
    return (SCRIPTS / name).read_text()


@pytest.mark.timeout(150)
def test_basic_process_pool_example(tmp_path):
    run_script(tmp_path, "pools_basic.py", seed("pools_basic.py"))
    proc = run_script(tmp_path, "pools_basic_checked.py", seed("pools_basic.py") + POSTLUDE_BASIC)
    assert "results ok" in proc.stdout


@pytest.mark.timeout(150)
def test_configuring_queues_example(tmp_path):
    run_script(tmp_path, "pools_queues.py", MY_WORKER + seed("pools_queues.py"))
    source = MY_WORKER + seed("pools_queues.py") + POSTLUDE_QUEUES
    proc = run_script(tmp_path, "pools_queues_checked.py", source)
    assert "queues ok" in proc.stdout


@pytest.mark.timeout(150)
def test_on_demand_example(tmp_path):
    proc = run_script(
        tmp_path, "pools_on_demand.py", MY_WORKER + seed("pools_on_demand.py") + POSTLUDE_ON_DEMAND
    )
    assert "on demand ok" in proc.stdout


POSTLUDE_RESULTS = '''
futures = [pool.process(i) for i in range(50)]
assert [f.result() for f in futures] == [2 * i for i in range(50)]
pool.stop()
print("results ok")
'''

# script -> (prelude, postlude) for the runs in every pool mode
POOL_SCRIPTS = {
    "pools_basic.py": ("", POSTLUDE_BASIC),
    "pools_queues.py": (MY_WORKER, POSTLUDE_RESULTS),
    "pools_on_demand.py": (MY_WORKER, POSTLUDE_RESULTS),
}
# The scripts' own max_workers stay; these variants change the mode and add on_demand=True.
POOL_VARIANTS = ["thread-pool-of-2", "process-pool-of-2", "thread-on-demand", "process-on-demand"]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("variant", POOL_VARIANTS)
@pytest.mark.parametrize("name", sorted(POOL_SCRIPTS))
def test_pool_example_in_every_mode(name, variant, tmp_path):
    prelude, postlude = POOL_SCRIPTS[name]
    proc = run_script(tmp_path, name, prelude + in_mode(seed(name), variant) + postlude)
    assert "results ok" in proc.stdout
