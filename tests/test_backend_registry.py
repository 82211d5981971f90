"""Backends by name: ``register_backend``, lazy imports, install hints, ``Backend.random``.

Each test registers into a copy of the registry, so the names it adds do
not outlive it.
"""

from __future__ import annotations

import random
import re
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

import coflow
from coflow import FlowGenerator, _backend, set_state, wait
from coflow.backends import backend_names, register_backend
from coflow.backends.virtual import VirtualBackend


@pytest.fixture(autouse=True)
def own_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(_backend, "_registry", dict(_backend._registry))
    yield


def two_steps() -> FlowGenerator:
    yield wait(1)
    yield set_state(lambda n: n + 1)


def test_the_built_in_backends_are_registered_first() -> None:
    assert backend_names()[:4] == ("asyncio", "gevent", "threads", "virtual")


def test_a_backend_registered_with_a_factory_is_started_by_name() -> None:
    made: list[VirtualBackend] = []

    def make() -> VirtualBackend:
        made.append(VirtualBackend(start=100.0))
        return made[-1]

    register_backend("clock-at-100", make)
    runner = coflow.start(two_steps, initial_state=1, backend="clock-at-100")

    assert runner.backend is made[0]
    assert runner.result() == 2
    assert made[0].now() == 101.0
    assert "clock-at-100" in backend_names()


def fake_module(monkeypatch: pytest.MonkeyPatch, name: str, **attributes: Any) -> None:
    module = types.ModuleType(name)
    vars(module).update(attributes)
    monkeypatch.setitem(sys.modules, name, module)


def test_a_backend_registered_by_path_is_imported_only_when_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register_backend("lazy", "lazy_backend_module:make")
    assert "lazy_backend_module" not in sys.modules  # registering imported nothing

    fake_module(monkeypatch, "lazy_backend_module", make=VirtualBackend)
    runner = coflow.start(two_steps, initial_state=1, backend="lazy")

    assert isinstance(runner.backend, VirtualBackend)
    assert runner.result() == 2


def test_a_backend_whose_import_fails_is_an_import_error_naming_it_and_its_install_hint() -> None:
    register_backend(
        "missing", "no_such_backend_module:Backend", install_hint="pip install coflow-missing"
    )

    with pytest.raises(ImportError) as raised:
        coflow.start(two_steps, initial_state=1, backend="missing")

    message = str(raised.value)
    assert "'missing' backend" in message
    assert "no_such_backend_module" in message
    assert message.endswith("install it with `pip install coflow-missing`")
    assert isinstance(raised.value.__cause__, ModuleNotFoundError)


def test_without_an_install_hint_the_import_error_still_names_the_backend() -> None:
    register_backend("missing", "no_such_backend_module:Backend")

    with pytest.raises(ImportError, match=re.escape("the 'missing' backend cannot be imported")):
        coflow.start(two_steps, initial_state=1, backend="missing")


def test_a_path_to_nothing_is_an_import_error_naming_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_module(monkeypatch, "almost_a_backend")
    register_backend("almost", "almost_a_backend:Missing")

    with pytest.raises(ImportError, match="almost_a_backend has no 'Missing'"):
        coflow.start(two_steps, initial_state=1, backend="almost")


def test_a_factory_that_gives_no_backend_is_a_type_error() -> None:
    register_backend("not-one", lambda: "a string")  # type: ignore[arg-type, return-value]

    with pytest.raises(TypeError, match="factory of backend 'not-one' gave 'a string'"):
        coflow.start(two_steps, initial_state=1, backend="not-one")


def test_registering_a_name_again_the_same_way_does_nothing() -> None:
    register_backend("twice", "some_module:Backend", install_hint="pip install it")
    register_backend("twice", "some_module:Backend", install_hint="pip install it")

    assert backend_names().count("twice") == 1


@pytest.mark.parametrize(
    "again",
    [
        pytest.param(("other_module:Backend", None), id="another factory"),
        pytest.param(("some_module:Backend", "pip install something-else"), id="another hint"),
    ],
)
def test_registering_a_name_again_another_way_is_a_value_error(again: tuple[str, Any]) -> None:
    register_backend("twice", "some_module:Backend")
    factory, hint = again

    with pytest.raises(ValueError, match="backend 'twice' is registered already"):
        register_backend("twice", factory, install_hint=hint)


def test_a_built_in_name_cannot_be_taken() -> None:
    with pytest.raises(ValueError, match="backend 'threads' is registered already"):
        register_backend("threads", "my_threads:Backend")


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        pytest.param(("", VirtualBackend), TypeError, id="an empty name"),
        pytest.param((3, VirtualBackend), TypeError, id="a name that is no str"),
        pytest.param(("x", "no_colon"), ValueError, id="a path without an attribute"),
        pytest.param(("x", ":attr"), ValueError, id="a path without a module"),
        pytest.param(("x", 42), TypeError, id="a factory that cannot be called"),
    ],
)
def test_bad_registrations_are_refused(arguments: tuple[Any, Any], error: type[Exception]) -> None:
    with pytest.raises(error, match="register_backend"):
        register_backend(*arguments)
    assert "x" not in backend_names()


def test_an_install_hint_must_be_text() -> None:
    with pytest.raises(TypeError, match="install_hint"):
        register_backend("x", VirtualBackend, install_hint=["pip"])  # type: ignore[arg-type]


# --- Backend.random -------------------------------------------------------------------------


def test_a_backend_that_sets_no_random_has_one_of_its_own() -> None:
    from coflow.backends.threads import ThreadBackend  # it leaves random to the default

    first, second = ThreadBackend(), ThreadBackend()

    assert isinstance(first.random, random.Random)
    assert first.random is first.random
    assert first.random is not second.random


def test_a_seeded_backend_keeps_its_own_random() -> None:
    assert VirtualBackend(seed=7).random.random() == random.Random(7).random()
