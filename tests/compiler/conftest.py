"""Registers the tiny test mixer for this folder's session and removes it afterwards (so other test
folders' "every registered mixer" suites do not see it)."""
from __future__ import annotations

import pytest
from compiler_helpers import TEST_MIXER, TinyMixer

from archdsl import registry


@pytest.fixture(autouse=True, scope="module")
def _test_mixer():
    import archdsl.compiler  # noqa: F401  (registers the built-ins first)
    registry.register("mixer", TEST_MIXER, override=True)(TinyMixer)
    yield
    registry._REGISTRY["mixer"].pop(TEST_MIXER, None)


