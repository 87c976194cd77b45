"""Ray mode on a two-node cluster: one ray pool spread over both nodes shares one
``LimitSet(mode="ray", shared=True)``; the limit holds across nodes and the calls run on both.
Then a worker on the second node loses its node mid-call: the call, and later ones, fail with
``WorkerCrashedError``, and its stop returns. After each ``stop()`` Ray's state API
(``ray.util.state``, served by the head node's dashboard) lists no actor of ours alive.

The cluster (``ray.cluster_utils.Cluster``: two raylets on this machine, in a temp dir of its own)
lives in a script run by ``subprocess``: a driver joins one cluster only, and the test process's
session Ray must not be disturbed. The script prints what the calls saw; the test checks it, and
that no process of that cluster is left once the script has shut it down.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap

import pytest

from conftest import process_alive, wait_until

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time

    import ray
    from ray.cluster_utils import Cluster
    from ray.util.state import list_actors

    from concurry import LimitSet, ResourceLimit, WorkerCrashedError, worker

    CALLS, HOLD = 20, 0.05

    @ray.remote(num_cpus=0)
    class Observer:
        # counts the calls inside the limit at once, as the calls themselves report it
        def __init__(self):
            self.inside = self.most = 0

        def enter(self):
            self.inside += 1
            self.most = max(self.most, self.inside)

        def leave(self):
            self.inside -= 1

        def peak(self):
            return self.most

    class Job:
        def __init__(self, observer):
            self.observer = observer

        def run(self, i):
            with self.limits.acquire({"slots": 1}, timeout=30):
                ray.get(self.observer.enter.remote())
                time.sleep(HOLD)
                ray.get(self.observer.leave.remote())
            return ray.get_runtime_context().get_node_id(), os.getpid()

        def nap(self, seconds):
            time.sleep(seconds)

    def our_actors_alive(settle=0.0):
        # Ray's state API: the worker actors (ours are "RayActor_<class>") the cluster has alive;
        # with ``settle``, waits that long for none to be left (ray.kill is asynchronous)
        deadline = time.monotonic() + settle
        while True:
            alive = sorted(
                a.class_name
                for a in list_actors(filters=[("state", "=", "ALIVE")])
                if a.class_name.startswith("RayActor_")
            )
            if not alive or time.monotonic() >= deadline:
                return alive
            time.sleep(0.1)

    temp_dir = sys.argv[1]
    # one "concurry_slot" per node: a pool of two actors each asking for one lands on both nodes
    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={
            "num_cpus": 1,
            "resources": {"node_a": 2, "concurry_slot": 1},
            "temp_dir": temp_dir,
            "include_dashboard": True,  # Ray's state API runs in it
        },
    )
    report = {}
    try:
        node_b = cluster.add_node(num_cpus=1, resources={"node_b": 2, "concurry_slot": 1})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        report["nodes"] = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        report["cluster_pids"] = [
            info.process.pid
            for node in [cluster.head_node, *cluster.worker_nodes]
            for infos in node.all_processes.values()
            for info in infos
        ]
        limits = LimitSet([ResourceLimit("slots", 1)], mode="ray", shared=True)
        observer = Observer.remote()
        pool = worker(Job).options(
            mode="ray", max_workers=2, limits=limits, resources={"concurry_slot": 1}
        ).init(observer)
        try:
            results = [f.result(timeout=60) for f in [pool.run(i) for i in range(CALLS)]]
            report["alive_before_stop"] = our_actors_alive()
        finally:
            pool.stop(timeout=30)
        report["alive_after_stop"] = our_actors_alive(settle=10)
        report["call_nodes"] = [node for node, _ in results]
        report["actor_pids"] = sorted({pid for _, pid in results})
        report["peak"] = ray.get(observer.peak.remote())

        # node lost: a worker placed on node_b, mid-call when the node goes
        lone = worker(Job).options(mode="ray", resources={"node_b": 1}).init(observer)
        running = lone.nap(120)
        time.sleep(0.5)
        cluster.remove_node(node_b)
        outcome = {}
        for name, call in [("running", lambda: running.result(timeout=60)), ("later", lambda: lone.nap(0))]:
            try:
                call()
            except WorkerCrashedError:
                outcome[name] = "WorkerCrashedError"
            except BaseException as exc:
                outcome[name] = repr(exc)
        lone.stop(timeout=30)
        report["node_lost"] = outcome
        report["alive_at_end"] = our_actors_alive(settle=10)
        ray.shutdown()
    finally:
        cluster.shutdown()
    print("REPORT " + json.dumps(report))
    """
)


def _cluster_processes(temp_dir: str, cwd: str) -> list[int]:
    """Live processes of the script's cluster: those naming its temp dir on their command line
    (raylets, GCS), holding a file in it, or working in the script's directory (Ray's agents and
    workers rename themselves, so their command line no longer says)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                ours = temp_dir in f.read().decode(errors="replace")
            ours = ours or os.readlink(f"/proc/{pid}/cwd") == cwd
            if not ours:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(temp_dir):
                        ours = True
                        break
        except OSError:  # gone meanwhile, or not ours to look into
            continue
        if ours and process_alive(int(pid)):
            found.append(int(pid))
    return found


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_pool_over_two_nodes_shares_one_limit_and_leaves_nothing(tmp_path):
    script = tmp_path / "two_nodes.py"
    script.write_text(SCRIPT)
    # short and in /tmp: Ray's unix socket paths live under it (and must stay under ~107 chars)
    temp_dir = tempfile.mkdtemp(prefix="cl-rc-", dir="/tmp")
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    # Ray's Cluster writes the head's address to <RAY_TMPDIR>/ray/ray_current_cluster, whatever
    # the head's own temp dir, and does not create that folder (on a fresh machine /tmp/ray is
    # not there): this test gets its own, so it neither fails there nor points later runs at it
    default_temp = os.path.join(temp_dir, "default")
    os.makedirs(os.path.join(default_temp, "ray"))
    env.update(
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # bind 127.0.0.1
        RAY_TMPDIR=default_temp,
        PYTHONPATH=os.pathsep.join([src, *(p for p in sys.path if p)]),
    )
    try:
        done = subprocess.run(
            [sys.executable, str(script), temp_dir],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=200,
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
        assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-5000:]
        report = json.loads(lines[-1][len("REPORT ") :])

        assert len(report["nodes"]) == 2
        assert len(report["call_nodes"]) == 20
        assert set(report["call_nodes"]) == set(report["nodes"])  # calls ran on both nodes
        assert len(report["actor_pids"]) == 2
        assert 0 < report["peak"] <= 1  # never more holders than the capacity (1), across nodes
        assert report["node_lost"] == {"running": "WorkerCrashedError", "later": "WorkerCrashedError"}
        # Ray's state API saw the pool's two actors, and none of ours alive after each stop()
        assert report["alive_before_stop"] == ["RayActor_Job", "RayActor_Job"]
        assert report["alive_after_stop"] == [] and report["alive_at_end"] == []

        # nothing of that cluster is left: its raylets, GCS and agents, and the pool's actors
        gone = [*report["cluster_pids"], *report["actor_pids"]]
        assert report["cluster_pids"]
        assert wait_until(lambda: not any(process_alive(p) for p in gone), timeout=30), [
            p for p in gone if process_alive(p)
        ]
        left = lambda: _cluster_processes(temp_dir, str(tmp_path))  # noqa: E731
        assert wait_until(lambda: not left(), timeout=30), left()
    finally:
        for pid in _cluster_processes(temp_dir, str(tmp_path)):  # a failed run leaves nothing either
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(temp_dir, ignore_errors=True)
