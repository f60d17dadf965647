"""Fuzz the YAML loader and the ``--set`` parser: whatever the text, the only exception is a
located SpecError (never a RecursionError, ReaderError, MemoryError or a hang)."""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archdsl.errors import SpecError
from archdsl.language.resolve import apply_overrides
from archdsl.language.yaml_loader import load_yaml

# YAML's structural characters, weighted so that nesting, aliases and tags come up often
ALPHABET = st.sampled_from(list("[]{}:,-?&*!|>'\"#%@` \n\t\\abcxyz019.") + ["\x00", "\x07", "\x1b", "\u009b",
                                                                             "<<", "!!python/", "&a ", "*a"])
TEXT = st.lists(ALPHABET, max_size=200).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXT)
def test_loader_raises_only_spec_errors(text):
    try:
        load_yaml(text, "f.yaml")
    except SpecError as e:
        assert str(e).startswith("f.yaml") and "\x1b" not in str(e) and "\x00" not in str(e)


@settings(max_examples=150, deadline=None)
@given(TEXT, st.integers(1, 3))
def test_set_values_raise_only_spec_errors(text, n):
    data = {"name": "x", "meta": {}}
    try:
        apply_overrides(data, {}, [f"meta.k{i}={text}" for i in range(n)])
    except SpecError as e:
        assert str(e).startswith("<--set>:")
