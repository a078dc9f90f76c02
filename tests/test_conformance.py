"""brainfly's conformance suite on every registered engine (see brainfly.testing.conformance)."""

import pytest

from brainfly.engines import base
from brainfly.testing.conformance import *  # noqa: F401,F403 - the suite's tests are collected here

pytest_plugins = ["pytester"]


@pytest.fixture
def clean_registry():
    """The in-process pytester runs register dummy engines; drop them afterwards."""
    base.engine_names()
    saved = dict(base._REGISTRY)
    yield
    base._REGISTRY.clear()
    base._REGISTRY.update(saved)


def test_plugin_requires_and_engine_fixture(pytester, clean_registry):
    """The plugin parametrises ``engine``, skips on missing capabilities with the reason,
    and fails (not skips) an unavailable engine named by --require-engine."""
    pytester.makepyfile(
        """
        import pytest
        from brainfly.engines.base import Engine, register_engine, _REGISTRY

        @register_engine
        class _Missing(Engine):
            name = "zz-missing"
            capabilities = frozenset({"poisson"})

            @classmethod
            def is_available(cls):
                return False, "library zz is not installed"

            def simulate(self, sim, trials, progress=None):
                raise NotImplementedError

        @pytest.mark.requires("schedule")
        def test_needs_schedule(engine):
            assert "schedule" in engine.capabilities

        def test_any(engine, seed):
            assert isinstance(seed, int)
        """
    )
    res = pytester.runpytest("-p", "no:cacheprovider", "--engine", "event", "-rs")
    res.assert_outcomes(passed=2)
    res = pytester.runpytest("-p", "no:cacheprovider", "--engine", "zz-missing", "-rs")
    res.assert_outcomes(skipped=2)
    res.stdout.fnmatch_lines(["*library zz is not installed*"])
    res = pytester.runpytest("-p", "no:cacheprovider", "--engine", "zz-missing", "--require-engine", "zz-missing")
    res.assert_outcomes(errors=2)
    res.stdout.fnmatch_lines(["*engine 'zz-missing' is required (--require-engine) but unavailable*"])


def test_plugin_capability_skip_reason(pytester, clean_registry):
    pytester.makepyfile(
        """
        import pytest
        from brainfly.engines.base import Engine, register_engine

        @register_engine
        class _Poor(Engine):
            name = "zz-poor"
            capabilities = frozenset({"poisson"})

            def simulate(self, sim, trials, progress=None):
                raise NotImplementedError

        @pytest.mark.requires("schedule", "silencing")
        def test_needs(engine):
            pass
        """
    )
    res = pytester.runpytest("-p", "no:cacheprovider", "--engine", "zz-poor", "-rs")
    res.assert_outcomes(skipped=1)
    res.stdout.fnmatch_lines(["*engine 'zz-poor' lacks capability schedule, silencing*"])


def test_plugin_standalone_reference_required(pytester, monkeypatch):
    """``reference_standalone`` is skipped where brian2-standalone cannot run, and fails
    the test when ``--require-engine brian2-standalone`` says it must run (as CI does)."""
    from brainfly.engines.brian2_engine import Brian2StandaloneEngine

    monkeypatch.setattr(Brian2StandaloneEngine, "is_available", lambda self: (False, "no C++ compiler here"))
    pytester.makepyfile(
        """
        def test_needs_standalone(reference_standalone):
            pass
        """
    )
    res = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    res.assert_outcomes(skipped=1)
    res.stdout.fnmatch_lines(["*'brian2-standalone' unavailable: no C++ compiler here*"])
    res = pytester.runpytest("-p", "no:cacheprovider", "--require-engine", "brian2-standalone")
    res.assert_outcomes(errors=1)
    res.stdout.fnmatch_lines(["*'brian2-standalone' is required (--require-engine) but unavailable*"])


def test_no_engine_is_its_own_reference():
    """The full-size tests pick a reference other than the engine under test."""
    from brainfly.engines.base import get_engine
    from brainfly.testing.conformance import reference_for

    assert reference_for(get_engine("brian2-standalone")).name == "brian2"
    assert reference_for(get_engine("event")).name == "brian2-standalone"
