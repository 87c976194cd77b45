"""Shared fixtures: the mode parametrisation and leak checks every behavioural test uses."""

from __future__ import annotations

import gc
import os
import threading
import time

import pytest

from concurry import global_config

# Behavioural tests run in every mode, so the modes cannot drift apart. Cases marked ``ray`` run
# on the session's one local Ray (``ray_cluster``), all in one xdist process; the ray cases of
# these every-mode tests are also marked ``ray_matrix`` (CI runs them on one Python, see .ci/run).
_RAY_MARKS = [pytest.mark.ray, pytest.mark.ray_matrix]
RAY = pytest.param("ray", marks=_RAY_MARKS, id="ray")
LOCAL_MODES = ["sync", "thread", "asyncio", "process"]
MODES = [*LOCAL_MODES, RAY]
CONCURRENT_MODES = ["thread", "asyncio", "process", RAY]  # modes where the caller does not wait
POOL_MODES = ["thread", "process", RAY]
OUT_OF_PROCESS = ("process", "ray")  # modes whose instance lives in another process


def _setup(mode: str, max_workers: int):
    marks = _RAY_MARKS if mode == "ray" else []
    return pytest.param((mode, max_workers), marks=marks, id=f"{mode}-pool" if max_workers > 1 else mode)


# (mode, max_workers) as one parameter: single workers in every mode, and pools of two
WORKER_SETUPS = [_setup(m, 1) for m in [*LOCAL_MODES, "ray"]] + [
    _setup(m, 2) for m in ("thread", "process", "ray")
]
WORKER_SETUP_IDS = [p.id for p in WORKER_SETUPS]
POOL_SETUPS = [p for p in WORKER_SETUPS if p.values[0][1] > 1]


@pytest.fixture(params=MODES)
def mode(request) -> str:
    return request.param


@pytest.fixture(params=CONCURRENT_MODES)
def concurrent_mode(request) -> str:
    return request.param


@pytest.fixture(params=POOL_MODES)
def pool_mode(request) -> str:
    return request.param


@pytest.fixture(autouse=True)
def _fresh_global_config():
    """Every test starts from the library defaults, whatever the previous one changed."""
    global_config.reset()
    yield
    global_config.reset()


def child_pids() -> set[int]:
    """Children of this test process (zombies included), read from /proc."""
    pids: set[int] = set()
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            with open(f"/proc/{os.getpid()}/task/{task}/children") as f:
                pids.update(int(p) for p in f.read().split())
        except FileNotFoundError:
            continue
    return pids


def process_alive(pid: int) -> bool:
    """Is ``pid`` a running process (not gone, not a zombie)?"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def zombie_children() -> set[int]:
    zombies = set()
    for pid in child_pids():
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    zombies.add(pid)
        except FileNotFoundError:
            continue
    return zombies


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def concurry_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("concurry")]


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until true or ``timeout``; for asserting eventual effects in tests."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    gc.collect()
    return predicate()


# Ray reads these when it is imported (tests and their scripts alike): it then binds 127.0.0.1,
# and the test clusters (loopback only) use no token: with Ray 2.60's token authentication a
# driver joining a second cluster on the machine was refused ("InvalidAuthToken").
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """One local Ray for the whole session, sized for the 2-core machine, bound to 127.0.0.1,
    in its own temp dir (so a killed run leaves nothing the next one would try to join).
    Yields the cluster's address, which is also ``RAY_ADDRESS`` for as long as it runs: scripts
    that tests run by ``subprocess`` join it, as after ``ray.init(address=...)``, rather than each
    starting a Ray of their own in Ray's shared default temp dir."""
    import ray  # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER is set above

    ray.init(
        address="local",
        num_cpus=2,
        resources={"concurry_test": 4},  # a custom resource, for the resources= pass-through
        object_store_memory=200_000_000,
        include_dashboard=False,
        _temp_dir=str(tmp_path_factory.mktemp("ray")),
        log_to_driver=False,
    )
    address = ray.get_runtime_context().gcs_address
    previous = os.environ.get("RAY_ADDRESS")
    os.environ["RAY_ADDRESS"] = address
    try:
        yield address
    finally:
        ray.shutdown()
        if previous is None:
            os.environ.pop("RAY_ADDRESS", None)
        else:
            os.environ["RAY_ADDRESS"] = previous


def pytest_itemcollected(item):
    """Tests marked ``ray`` run in one xdist process (``--dist loadgroup``): one local Ray serves
    them all, rather than one Ray per test process competing for the two cores. (Grouped as each
    item is collected: xdist reads the groups before conftest's modifyitems hooks run.)"""
    if item.get_closest_marker("ray") is not None:
        item.add_marker(pytest.mark.xdist_group("ray"))


@pytest.fixture(autouse=True)
def _ray_for_ray_cases(request):
    """A case marked ``ray`` (a module, a test or one parameter) gets the session's Ray."""
    if request.node.get_closest_marker("ray") is not None:
        request.getfixturevalue("ray_cluster")
