"""Shared set-up of the test folders.

Tests are grouped by domain (``core``, ``scoring``, ``losses``, ``index``, ``encoders``, ``eval``,
``cuda``, ``cli``, ``examples``, ``benches``); helpers every folder may use live in
``tests/support`` (plain references, test data, script runners) and are imported as
``from support.<module> import ...``. The benchmarks' harness (``benches/harness``: exact search,
recall, data sets, timers, peer adapters) is shared with the tests: ``benches/`` is put on
``sys.path`` too, so it is imported as ``from harness.<module> import ...``, the same module the
scripts import.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
for folder in (TESTS, TESTS.parent / "benches"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from support import scripts  # noqa: E402


@pytest.fixture
def run_script():
    """Run a script of ``benches/`` or ``examples/`` in a subprocess (see ``support.scripts``)."""
    return scripts.run_script


@pytest.fixture
def load_script():
    """Import a script of ``benches/`` or ``examples/`` as a module (see ``support.scripts``)."""
    return scripts.load_script
