"""`plugins:` imports user modules before the spec's components are looked up."""
import uuid

import pytest
import torch
from spec_helpers import TINY, write

from archdsl.compiler import build_model
from archdsl.errors import SpecError
from archdsl.language import load_spec

PLUGIN = '''
import torch
from torch import nn
from archdsl.registry import register


@register("mixer", "{name}")
class ScaleMixer(nn.Module):
    """x * learnable scale: [B, N, C] -> [B, N, C]."""

    def __init__(self, dim, heads, init=1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x, hw):
        return x * self.scale
'''


def test_plugin_module_registers_a_mixer(tmp_path, monkeypatch):
    mod, name = f"plug_{uuid.uuid4().hex[:8]}", f"scale_{uuid.uuid4().hex[:8]}"
    write(tmp_path, f"{mod}.py", PLUGIN.replace("{name}", name))
    monkeypatch.syspath_prepend(str(tmp_path))
    text = TINY.replace("block: {type: mlla, mlp_ratio: 2.0}", "block: transformer").replace(
        "mixer:\n  type: linear_attention\n  positional: [rope2d, lepe]\n", f"mixer: {{type: {name}, init: 0.5}}\n")
    spec = load_spec(write(tmp_path, "s.yaml", text + f"plugins: [{mod}]\n"), allow_plugins=True)
    model = build_model(spec)
    scales = [p for n, p in model.named_parameters() if n.endswith("attn.scale")]
    assert len(scales) == 3 and all(torch.equal(s, torch.full_like(s, 0.5)) for s in scales)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_missing_plugin_is_located(tmp_path):
    p = write(tmp_path, "s.yaml", TINY + "plugins: [os, no_such_module_q1]\n")
    with pytest.raises(SpecError) as ei:
        load_spec(p)
    assert (ei.value.line, ei.value.col, ei.value.path) == (16, 15, "plugins.1")
    assert "cannot import plugin module 'no_such_module_q1'" in ei.value.message
    with pytest.raises(SpecError, match=r"plugins.0: not a Python module name: 'a b'"):
        load_spec(write(tmp_path, "t.yaml", TINY + "plugins: [a b]\n"))
