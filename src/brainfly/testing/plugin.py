"""pytest plugin of brainfly (registered as entry point ``pytest11``).

Adds ``--run-slow`` and ``--run-gpu``: tests marked ``slow`` or ``gpu`` are skipped
unless asked for.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register brainfly's command-line options."""
    group = parser.getgroup("brainfly")
    group.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")
    group.addoption("--run-gpu", action="store_true", default=False, help="run tests marked gpu")


def pytest_configure(config: pytest.Config) -> None:
    """Declare the markers."""
    config.addinivalue_line("markers", "slow: long-running (full-size networks); run with --run-slow")
    config.addinivalue_line("markers", "gpu: needs a CUDA device; run with --run-gpu")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip slow/gpu tests unless their option is given."""
    for marker, option in (("slow", "--run-slow"), ("gpu", "--run-gpu")):
        if config.getoption(option):
            continue
        skip = pytest.mark.skip(reason=f"{marker} test: run with {option}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)
