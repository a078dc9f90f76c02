"""pytest plugin of brainfly (registered as entry point ``pytest11``).

Options
-------
``--run-slow`` / ``--run-gpu``
    Tests marked ``slow`` or ``gpu`` are skipped unless asked for.
``--engine NAME`` (repeatable)
    Run the conformance suite on these engines only (default: every registered engine).
``--require-engine NAME`` (repeatable)
    An engine that must run: if it is unavailable here its tests fail instead of being
    skipped, so a CI run that silently skipped everything cannot pass.

Fixtures and markers
--------------------
``engine``
    Parametrised over the registered engines except the reference ``brian2`` itself; an
    engine that is unavailable here is skipped with the reason from its ``is_available``.
    Engines that compile a program per run (:data:`COMPILING_ENGINES`) join only with
    ``--run-slow`` or when named by ``--engine``; GPU-only engines (:data:`GPU_ENGINES`)
    only with ``--run-gpu`` or when named.
``@pytest.mark.requires("schedule", ...)`` (also ``brainfly.testing.requires``)
    Skips engines that lack one of the capabilities, naming it.
``reference``
    The Brian2 reference engine (runtime mode, in-process), skipped when brian2 is missing
    (failed instead with ``--require-engine brian2``).
``reference_standalone``
    The reference in C++ standalone mode (``brian2-standalone``, one process), skipped when
    it cannot run here (failed instead with ``--require-engine brian2-standalone``). The
    conformance suite runs it on the tiny cases in every run, one build for all of them.
``seed``
    An integer derived from the test id: the same test gets the same seed in every run.
"""

from __future__ import annotations

import zlib
from typing import Any

import pytest

from brainfly.engines.base import engine_names, get_engine

#: The reference engine: never parametrised as ``engine``, it is what engines are compared with.
REFERENCE_ENGINE = "brian2"
#: The reference in C++ standalone mode (fixture ``reference_standalone``).
STANDALONE_REFERENCE = "brian2-standalone"
#: Engines that compile a program for every run (minutes per test on a small CI machine):
#: in the suite only with ``--run-slow`` or when named by ``--engine``.
COMPILING_ENGINES = frozenset({"brian2-standalone", "brian2cuda"})
#: Engines that run on a GPU only: in the default suite only with ``--run-gpu`` (or ``--engine``).
GPU_ENGINES = frozenset({"brian2cuda", "nestgpu"})


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register brainfly's command-line options."""
    group = parser.getgroup("brainfly")
    group.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")
    group.addoption("--run-gpu", action="store_true", default=False, help="run tests marked gpu")
    group.addoption("--engine", action="append", default=[], metavar="NAME",
                    help="run the conformance suite on this engine only (repeatable)")
    group.addoption("--require-engine", action="append", default=[], metavar="NAME",
                    help="fail (not skip) when this engine is unavailable (repeatable)")


def pytest_configure(config: pytest.Config) -> None:
    """Declare the markers."""
    config.addinivalue_line("markers", "slow: long-running (full-size networks); run with --run-slow")
    config.addinivalue_line("markers", "gpu: needs a CUDA device; run with --run-gpu")
    config.addinivalue_line(
        "markers", "requires(*capabilities): skip engines that lack one of these capabilities")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip slow/gpu tests unless their option is given."""
    for marker, option in (("slow", "--run-slow"), ("gpu", "--run-gpu")):
        if config.getoption(option):
            continue
        skip = pytest.mark.skip(reason=f"{marker} test: run with {option}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


def _suite_engines(config: pytest.Config) -> list[str]:
    names = [n for n in engine_names() if n != REFERENCE_ENGINE]
    chosen = config.getoption("--engine") or []
    if chosen:
        unknown = sorted(set(chosen) - set(engine_names()))
        if unknown:
            raise pytest.UsageError(f"--engine: unknown engine(s) {unknown}; registered engines are {engine_names()}")
        names = [n for n in names if n in chosen]
    else:
        if not config.getoption("--run-slow"):
            names = [n for n in names if n not in COMPILING_ENGINES]
        if not config.getoption("--run-gpu"):
            names = [n for n in names if n not in GPU_ENGINES]
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise the ``engine`` fixture over the registered engines."""
    if "engine" in metafunc.fixturenames:
        for mark in metafunc.definition.iter_markers("parametrize"):
            argnames = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
            if isinstance(argnames, str):
                argnames = [a.strip() for a in argnames.split(",")]
            if "engine" in argnames:
                return  # the test parametrises "engine" itself
        names = _suite_engines(metafunc.config)
        metafunc.parametrize("engine", names, indirect=True, ids=names)


def _required(config: pytest.Config) -> set[str]:
    return set(config.getoption("--require-engine") or [])


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> Any:
    """An engine instance (parametrised); skipped if unavailable or lacking a capability."""
    name = request.param
    instance = get_engine(name)
    ok, reason = instance.is_available()
    if not ok:
        if name in _required(request.config):
            pytest.fail(f"engine {name!r} is required (--require-engine) but unavailable: {reason}")
        pytest.skip(f"engine {name!r} unavailable: {reason}")
    for mark in request.node.iter_markers("requires"):
        missing = [c for c in mark.args if c not in instance.capabilities]
        if missing:
            pytest.skip(f"engine {name!r} lacks capability {', '.join(missing)}")
    return instance


@pytest.fixture(scope="session")
def reference(request: pytest.FixtureRequest) -> Any:
    """The Brian2 reference engine (runtime mode, one process).

    Skipped without brian2, unless ``--require-engine brian2`` says the reference must run
    (CI does): then the test fails.
    """
    return _available_or_skip(request, REFERENCE_ENGINE, n_jobs=1)


def _available_or_skip(request: pytest.FixtureRequest, name: str, **options: Any) -> Any:
    ref = get_engine(name, **options)
    ok, reason = ref.is_available()
    if not ok:
        if name in _required(request.config):
            pytest.fail(f"the reference engine {name!r} is required (--require-engine) but unavailable: {reason}")
        pytest.skip(f"reference engine {name!r} unavailable: {reason}")
    return ref


@pytest.fixture(scope="session")
def reference_standalone(request: pytest.FixtureRequest) -> Any:
    """The Brian2 reference in C++ standalone mode (one worker: one build per run).

    Skipped where it cannot run (no compiler, no brian2), unless ``--require-engine
    brian2-standalone`` says it must (CI does): then the test fails.
    """
    return _available_or_skip(request, STANDALONE_REFERENCE, n_jobs=1)


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """A seed derived from the test id (stable across runs and machines)."""
    return zlib.crc32(request.node.nodeid.encode()) & 0x7FFFFFFF
