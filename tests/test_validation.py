"""Validation (SPEC §2.5): pydantic / morphic.Typed workers, validated methods."""

from __future__ import annotations

import abc
import os
import threading

import pytest
from morphic import Typed, validate
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
    validate_call,
)

from concurry import Worker, worker
from conftest import OUT_OF_PROCESS, concurry_threads

# ---- model workers (module level so process mode can import them) ----


class Scorer(BaseModel):
    name: str
    score: float
    tags: list[str] = []

    def describe(self) -> str:
        return f"{self.name}:{self.score}"

    def score_type(self) -> str:
        return type(self.score).__name__


class Hooked(BaseModel):
    """A pydantic model whose post-init hook records where it ran."""

    label: str

    def model_post_init(self, context, /) -> None:
        self.__dict__["where"] = (os.getpid(), threading.get_ident())

    def hook_ran_at(self) -> tuple[int, int]:
        return self.__dict__["where"]


class RobustWorker(Typed):
    api_key: str = Field(min_length=10)
    retries: int = Field(default=3, ge=0)

    def post_initialize(self) -> None:
        HOOK_CALLS.append((os.getpid(), threading.get_ident()))

    def get_retries(self) -> int:
        return self.retries

    def key(self) -> str:
        return self.api_key

    def hook_threads(self) -> list:
        return list(HOOK_CALLS)


HOOK_CALLS: list = []


class Cache(BaseModel):
    """Aliases, private attributes and an after-validator: all must work across the worker."""

    model_config = ConfigDict(populate_by_name=True)
    n: int = Field(alias="count")
    _cache: dict = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check(self):
        if self.n < 0:
            raise ValueError("n must be >= 0")
        return self

    def put(self, key: str, value: int) -> int:
        self._cache[key] = value
        return len(self._cache) + self.n


class MorphicCalc:
    @validate
    def calculate(self, x: int, y: int) -> int:
        return x + y


class PydanticCalc:
    @validate_call
    def calculate(self, x: int, y: int) -> int:
        return x + y


# ---- pydantic.BaseModel workers ----

def test_pydantic_worker_fields_are_validated_and_coerced(mode):
    w = worker(Scorer).options(mode=mode).init(name="AI", score="0.99")
    try:
        assert w.describe().result(timeout=10) == "AI:0.99"
        assert w.score_type().result(timeout=10) == "float"
    finally:
        w.stop()


def test_pydantic_worker_invalid_input_raises_validation_error_before_start(mode):
    before = set(concurry_threads())
    with pytest.raises(ValidationError, match="score"):
        worker(Scorer).options(mode=mode).init(name="AI", score="not a number")
    with pytest.raises(ValidationError, match="name"):
        worker(Scorer).options(mode=mode).init(score=1.0)
    assert set(concurry_threads()) <= before


def test_pydantic_worker_rejects_positional_arguments():
    with pytest.raises(TypeError, match="pass its fields as keyword arguments"):
        worker(Scorer).options(mode="thread").init("AI", 0.5)


def test_pydantic_seed_example_shape():
    @worker(mode="thread")
    class PydanticWorker(BaseModel):
        name: str
        score: float

        def show(self) -> str:
            return f"{self.name}={self.score}"

    w = PydanticWorker.init(name="AI", score=0.99)
    try:
        assert w.show().result(timeout=10) == "AI=0.99"
    finally:
        w.stop()


def test_pydantic_post_init_runs_where_the_instance_lives(mode):
    w = worker(Hooked).options(mode=mode).init(label="x")
    try:
        pid, tid = w.hook_ran_at().result(timeout=10)
        if mode == "sync":
            assert (pid, tid) == (os.getpid(), threading.get_ident())
        elif mode in OUT_OF_PROCESS:
            assert pid != os.getpid()
        else:
            assert pid == os.getpid() and tid != threading.get_ident()
    finally:
        w.stop()


# ---- morphic.Typed workers ----

def test_typed_worker_validated_in_caller_before_worker_starts(mode):
    HOOK_CALLS.clear()
    before = set(concurry_threads())
    with pytest.raises(ValueError, match="api_key"):  # pydantic ValidationError is a ValueError
        worker(RobustWorker).options(mode=mode).init(api_key="short")
    with pytest.raises(ValueError, match="retries"):
        worker(RobustWorker).options(mode=mode).init(api_key="secret_key_123", retries=-1)
    assert HOOK_CALLS == []  # the hook never ran for rejected input
    assert set(concurry_threads()) <= before


def test_typed_worker_coerces_and_runs_post_initialize_where_it_lives(mode):
    HOOK_CALLS.clear()
    w = worker(RobustWorker).options(mode=mode).init(api_key="secret_key_123", retries="5")
    try:
        assert w.get_retries().result(timeout=10) == 5
        assert w.key().result(timeout=10) == "secret_key_123"
        hooks = w.hook_threads().result(timeout=10)
        assert len(hooks) == 1  # post_initialize ran once, not in the caller's validation too
        pid, tid = hooks[0]
        if mode == "sync":
            assert (pid, tid) == (os.getpid(), threading.get_ident())
        elif mode in OUT_OF_PROCESS:
            assert pid != os.getpid()
        else:
            assert pid == os.getpid() and tid != threading.get_ident()
        if mode not in OUT_OF_PROCESS:
            assert len(HOOK_CALLS) == 1
    finally:
        w.stop()


def test_typed_worker_defaults_apply(mode):
    w = worker(RobustWorker).options(mode=mode).init(api_key="secret_key_123")
    try:
        assert w.get_retries().result(timeout=10) == 3
    finally:
        w.stop()


# ---- validated methods ----

@pytest.mark.parametrize("cls", [MorphicCalc, PydanticCalc], ids=["morphic.validate", "validate_call"])
def test_validated_methods_coerce_arguments(mode, cls):
    w = worker(cls).options(mode=mode).init()
    try:
        assert w.calculate("5", "10").result(timeout=10) == 15
        assert w.calculate(x="1", y=2).result(timeout=10) == 3
    finally:
        w.stop()


@pytest.mark.parametrize("cls", [MorphicCalc, PydanticCalc], ids=["morphic.validate", "validate_call"])
def test_validated_methods_reject_bad_arguments_through_the_future(mode, cls):
    w = worker(cls).options(mode=mode).init()
    try:
        future = w.calculate("five", "10")
        with pytest.raises(ValueError) as info:
            future.result(timeout=10)
        assert "valid integer" in str(info.value) and "five" in str(info.value)
        assert w.calculate(1, 1).result(timeout=10) == 2  # still usable
    finally:
        w.stop()


def test_pydantic_aliases_private_attributes_and_model_validators(mode):
    for kwargs in ({"count": "3"}, {"n": 3}):
        w = worker(Cache).options(mode=mode).init(**kwargs)
        try:
            assert w.put("a", 1).result(timeout=10) == 4
            assert w.put("b", 2).result(timeout=10) == 5  # private state persists
        finally:
            w.stop()
    with pytest.raises(ValidationError, match="n must be >= 0"):
        worker(Cache).options(mode=mode).init(count=-1)


# ---- Worker subclasses mixed with classes that have their own metaclass (SPEC §2.1) ----


class SubclassedModel(Worker, BaseModel):
    x: int

    def plus(self, y: int) -> int:
        return self.x + y


class SubclassedTyped(Worker, Typed):
    name: str

    def hello(self) -> str:
        return f"hi {self.name}"


class AbstractJob(Worker, abc.ABC):
    @abc.abstractmethod
    def run(self) -> str: ...


class ConcreteJob(AbstractJob):
    def run(self) -> str:
        return f"ran in {os.getpid()}"


def test_worker_subclass_may_also_be_a_model_typed_or_abc(mode):
    model = SubclassedModel.options(mode=mode).init(x="5")  # coerced, as with @worker
    typed = SubclassedTyped.options(mode=mode).init(name="ann")
    job = ConcreteJob.options(mode=mode).init()
    try:
        assert model.plus(2).result(timeout=10) == 7
        assert typed.hello().result(timeout=10) == "hi ann"
        assert job.run().result(timeout=10).startswith("ran in ")
    finally:
        for handle in (model, typed, job):
            handle.stop()
    with pytest.raises(ValidationError):
        SubclassedModel.options(mode=mode).init(x="not a number")
    with pytest.raises(TypeError, match="abstract"):
        AbstractJob.options(mode=mode).init()  # Python's own refusal, raised from init()


def test_calling_a_worker_subclass_makes_a_worker_not_an_instance():
    handle = SubclassedModel(x=1)
    try:
        assert not isinstance(handle, SubclassedModel)
        assert handle.plus(1).result(timeout=10) == 2
    finally:
        handle.stop()
