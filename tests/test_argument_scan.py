"""Futures inside arguments (SPEC §2.5): the scan copes with cycles and deep nesting, copies only
what leads to a future (keeping shared references and cycles), and a call whose arguments
cannot be prepared fails alone, in every mode, without stalling the calls behind it.
"""

from __future__ import annotations

import concurrent.futures as cf

import pytest

from concurry import worker
from concurry.runtime import call_has_futures, collect_futures, replace_futures
from conftest import OUT_OF_PROCESS

# pickle itself gives up a little below 500 levels of nested lists on Python 3.10/3.11, so the
# process mode is checked at a depth it can carry; the other modes pass objects as they are.
PICKLABLE_DEPTH = 450
DEEP = 5000


def done(value):
    future = cf.Future()
    future.set_result(value)
    return future


def nest(depth: int, inner):
    value = inner
    for _ in range(depth):
        value = [value]
    return value


@worker
class Inspector:
    def depth(self, value) -> tuple[int, object]:
        """How many lists deep ``value`` goes (iteratively), and what is at the bottom."""
        levels = 0
        while type(value) is list and value:
            value, levels = value[0], levels + 1
        return levels, value

    def list_cycle(self, value: list) -> tuple[object, bool]:
        return value[0], value[1] is value

    def dict_cycle(self, value: dict) -> tuple[object, bool]:
        return value["value"], value["self"] is value

    def shared(self, value: tuple) -> tuple[bool, bool, object]:
        first, second, others = value
        return first is second, first is others["again"], first[0]

    def echo(self, value):
        return value


@pytest.fixture
def inspector(mode):
    w = Inspector.options(mode=mode).init()
    yield w
    w.stop(timeout=10)


@pytest.mark.timeout(60)
def test_cyclic_arguments_without_futures(inspector):
    looped = [1]
    looped.append(looped)
    keyed = {"value": 2}
    keyed["self"] = keyed
    assert inspector.list_cycle(looped).result(timeout=30) == (1, True)
    assert inspector.dict_cycle(keyed).result(timeout=30) == (2, True)


@pytest.mark.timeout(60)
def test_cycle_holding_a_future_keeps_the_cycle(inspector):
    looped = [done(3)]
    looped.append(looped)
    keyed = {"value": done(4)}
    keyed["self"] = keyed
    assert inspector.list_cycle(looped).result(timeout=30) == (3, True)
    assert inspector.dict_cycle(keyed).result(timeout=30) == (4, True)
    assert looped[0].result() == 3  # the caller's own objects are left alone


@pytest.mark.timeout(60)
def test_shared_references_stay_shared(inspector):
    inner = [done(5)]
    assert inspector.shared((inner, inner, {"again": inner})).result(timeout=30) == (True, True, 5)


@pytest.mark.timeout(60)
def test_deeply_nested_arguments(inspector, mode):
    depth = PICKLABLE_DEPTH if mode in OUT_OF_PROCESS else DEEP
    assert inspector.depth(nest(depth, [])).result(timeout=30) == (depth, [])
    assert inspector.depth(nest(depth, done(6))).result(timeout=30) == (depth, 6)


@pytest.mark.timeout(60)
def test_calls_behind_a_hard_argument_still_run(mode):
    """Several calls in one burst, hard arguments among them: every future ends resolved, in
    order, and stop() leaves nothing running (asyncio mode used to stall the burst)."""
    w = Inspector.options(mode=mode).init()
    looped = [7]
    looped.append(looped)
    unhashable = {done([1, 2])}  # its future's value cannot go in a set: this call fails alone
    deep = nest(PICKLABLE_DEPTH, 8)
    futures = [w.echo(1), w.list_cycle(looped), w.echo(unhashable), w.echo(2), w.depth(deep)]
    w.stop(timeout=10)
    assert all(f.done() for f in futures)
    assert futures[0].result() == 1
    assert futures[1].result() == (7, True)
    with pytest.raises(TypeError, match="unhashable"):
        futures[2].result()
    assert futures[3].result() == 2
    assert futures[4].result() == (PICKLABLE_DEPTH, 8)


# ---- the scan itself ----


def test_scan_visits_each_container_once():
    f1, f2 = done(1), done(2)
    tree = [f1, [f1, f2], {"a": f2}, (f1,)]
    assert collect_futures(tree, []) == [f1, f2]  # each future once, in the order found
    assert call_has_futures((nest(100_000, f1),), {})
    assert not call_has_futures((nest(100_000, None),), {"k": [1, 2]})
    assert call_has_futures((), {"k": (1, {"x": f2})})


def test_replace_copies_only_what_leads_to_a_future():
    plain, with_future = [1, 2], [done(3)]
    result = replace_futures(([plain, with_future], {"p": plain}), lambda f: f.result())
    assert result == ([[1, 2], [3]], {"p": [1, 2]})
    assert result[0][0] is plain and result[1]["p"] is plain
    untouched = ([1], {"x": (2,)})
    assert replace_futures(untouched, lambda f: f.result()) is untouched


def test_replace_rebuilds_a_cycle_through_a_tuple():
    holder: list = []
    pair = (holder, done(9))
    holder.append(pair)
    copy = replace_futures(pair, lambda f: f.result())
    assert copy[1] == 9 and copy[0][0] is copy
    frozen = replace_futures(({done(1), 2}, frozenset([done(3)])), lambda f: f.result())
    assert frozen == ({1, 2}, frozenset([3]))


def test_replace_resolves_left_to_right():
    order = []
    futures = [done(i) for i in range(5)]
    replace_futures(([futures[0], [futures[1], {"k": futures[2]}]], futures[3], (futures[4],)), order.append)
    assert order == futures
