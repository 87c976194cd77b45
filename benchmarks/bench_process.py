"""Process mode (issue #3 "Performance"), each row against a baseline measured in the same run:

- 2k no-op calls then wait all        vs ``ProcessPoolExecutor(1)``: <= 50 us/call and <= 0.2x
- one call and wait, repeated         vs ``ProcessPoolExecutor(1)``: <= 150 us and <= 0.4x
- start to first result (one worker)  vs ``ProcessPoolExecutor(1)`` start to first result: <= 150 ms
- 1 MB bytes argument round trip      vs a bare ``multiprocessing.Pipe`` echo: <= 1.5x
- 1 KB / 64 KB / 64 MB echo round trip vs a bare ``multiprocessing.Pipe`` echo: <= 2x, 2x, 1.2x
- a CPU-bound loop timed inside the child vs the same loop in a bare ``multiprocessing`` process:
  <= 1.03x (the worker must not tax the user's code)
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time

from common import Row, best_of, timed
from concurry import worker

TITLE = "Process mode: single-worker overhead"

BATCH_CALLS = 2_000
ROUND_TRIPS = 500
MB = 1 << 20
ECHOES = (("1 KB", 1 << 10, 2000, 2.0), ("64 KB", 64 << 10, 1000, 2.0), ("64 MB", 64 * MB, 5, 1.2))


class Echo:
    def noop(self) -> None:
        return None

    def echo(self, value: bytes) -> bytes:
        return value


EchoWorker = worker(Echo)


def _ours(body, units: int, repeat: int = 5) -> float:
    w = EchoWorker.options(mode="process").init()
    w.noop().result()
    try:
        return best_of(lambda: timed(lambda: body(w), units), repeat=repeat)
    finally:
        w.stop()


def _pool(body, units: int, repeat: int = 5) -> float:
    pool = cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    pool.submit(int).result()  # ``int()`` is a picklable no-op
    try:
        return best_of(lambda: timed(lambda: body(pool), units), repeat=repeat)
    finally:
        pool.shutdown()


def batch() -> tuple[float, float]:
    def ours(w) -> None:
        noop = w.noop
        for f in [noop() for _ in range(BATCH_CALLS)]:
            f.result()

    def base(pool) -> None:
        submit = pool.submit
        for f in [submit(int) for _ in range(BATCH_CALLS)]:
            f.result()

    return _ours(ours, BATCH_CALLS), _pool(base, BATCH_CALLS)


def round_trip() -> tuple[float, float]:
    def ours(w) -> None:
        noop = w.noop
        for _ in range(ROUND_TRIPS):
            noop().result()

    def base(pool) -> None:
        submit = pool.submit
        for _ in range(ROUND_TRIPS):
            submit(int).result()

    return _ours(ours, ROUND_TRIPS), _pool(base, ROUND_TRIPS // 2)


def start_up() -> tuple[float, float]:
    def ours() -> float:
        start = time.perf_counter()
        w = EchoWorker.options(mode="process").init()
        w.noop().result()
        elapsed = time.perf_counter() - start
        w.stop()
        return elapsed

    def base() -> float:
        start = time.perf_counter()
        pool = cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        pool.submit(int).result()
        elapsed = time.perf_counter() - start
        pool.shutdown()
        return elapsed

    return best_of(ours, repeat=5), best_of(base, repeat=3)


def _echo_loop(conn) -> None:
    while True:
        try:
            data = conn.recv_bytes()
        except EOFError:
            return
        conn.send_bytes(data)


def megabyte() -> tuple[float, float]:
    return echo_round_trip(MB, 50)


def echo_round_trip(size: int, rounds: int) -> tuple[float, float]:
    data = os.urandom(size)

    def ours(w) -> None:
        echo = w.echo
        for _ in range(rounds):
            echo(data).result()

    mine = _ours(ours, rounds)
    here, there = multiprocessing.Pipe()
    process = multiprocessing.get_context("fork").Process(target=_echo_loop, args=(there,), daemon=True)
    process.start()
    there.close()

    def bare() -> None:
        for _ in range(rounds):
            here.send_bytes(data)
            here.recv_bytes()

    try:
        bare()
        base = best_of(lambda: timed(bare, rounds))
    finally:
        here.close()
        process.join(5)
    return mine, base


CPU_LOOP = 3_000_000
QUICK = {"BATCH_CALLS": 500, "ROUND_TRIPS": 100, "ECHOES": (), "CPU_LOOP": 500_000}
# The same source runs in both processes (compiled there), so neither side is favoured by how
# the function travels.
LOOP_SOURCE = """
import time

def cpu_loop(n):
    start = time.perf_counter()
    total = 0
    for i in range(n):
        pair = (i, [i])  # allocates, as real code does: the collector runs now and then
        total += pair[0] * i % 7
    return time.perf_counter() - start
"""
BARE_CHILD = LOOP_SOURCE + """
while True:
    try:
        n = conn.recv()
    except EOFError:
        break
    conn.send(cpu_loop(n))
"""


class Cpu:
    def __init__(self) -> None:
        namespace: dict = {}
        exec(LOOP_SOURCE, namespace)
        self.cpu_loop = namespace["cpu_loop"]

    def loop(self, n: int) -> float:
        return self.cpu_loop(n)


def cpu_bound(rounds: int = 7) -> tuple[float, float]:
    """The loop's own time in our worker and in a bare spawned process, interleaved."""
    w = worker(Cpu).options(mode="process").init()
    here, there = multiprocessing.Pipe()
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=exec, args=(BARE_CHILD, {"conn": there}), daemon=True)
    process.start()
    there.close()
    ours, base = [], []
    try:
        for _ in range(rounds):
            ours.append(w.loop(CPU_LOOP).result())
            here.send(CPU_LOOP)
            base.append(here.recv())
    finally:
        w.stop()
        here.close()
        process.join(5)
    return min(ours), min(base)


def run() -> list[Row]:
    rows = []
    mine, base = batch()
    rows.append(Row(
        f"process, {BATCH_CALLS:,} no-op calls then wait all", mine, "ProcessPoolExecutor(1)", base,
        budget="<= 50 us and <= 0.2x", ok=mine <= 50e-6 and mine <= 0.2 * base,
    ))
    mine, base = round_trip()
    rows.append(Row(
        "process, one call and wait, repeated", mine, "ProcessPoolExecutor(1)", base,
        budget="<= 150 us and <= 0.4x", ok=mine <= 150e-6 and mine <= 0.4 * base,
    ))
    mine, base = start_up()
    rows.append(Row(
        "process, start to first result", mine, "ProcessPoolExecutor(1), spawn", base,
        unit="ms", budget="<= 150 ms", ok=mine <= 0.150,
    ))
    mine, base = megabyte()
    rows.append(Row(
        "process, 1 MB bytes argument round trip", mine, "bare multiprocessing.Pipe echo", base,
        budget="<= 1.5x", ok=mine <= 1.5 * base,
    ))
    for label, size, rounds, limit in ECHOES:
        mine, base = echo_round_trip(size, rounds)
        rows.append(Row(
            f"process, {label} echo round trip", mine, "bare multiprocessing.Pipe echo", base,
            unit="ms" if size >= MB else "us/call", budget=f"<= {limit}x", ok=mine <= limit * base,
        ))
    mine, base = cpu_bound()
    rows.append(Row(
        "process, CPU-bound loop timed inside the child", mine, "bare multiprocessing process", base,
        unit="ms", budget="<= 1.03x", ok=mine <= 1.03 * base,
    ))
    return rows
