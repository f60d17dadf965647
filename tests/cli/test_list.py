"""`archdsl list`: registered components, including the shipped YAML block templates and a
component registered by a plugin."""
from __future__ import annotations

import json

import torch

from archdsl import register, registry
from archdsl.cli import main


def test_list_json_names_every_kind_and_shipped_templates(capsys):
    assert main(["list", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert set(table) == set(registry.KINDS)
    assert {"linear_attention", "softmax_attention", "selective_ssm"} <= set(table["mixer"])
    assert {"mlla", "transformer", "mamba"} <= set(table["block"])  # YAML templates count as blocks
    assert "rope2d" in table["posenc"]


def test_list_filter_and_a_newly_registered_mixer(capsys):
    @register("mixer", "zz_test_identity_mixer", override=True)
    class _Identity(torch.nn.Module):
        def __init__(self, dim, heads):
            super().__init__()

        def forward(self, x, hw):
            return x

    try:
        assert main(["list", "mixer", "--filter", "zz_*"]) == 0
        assert capsys.readouterr().out.strip() == "mixer: zz_test_identity_mixer"
    finally:  # keep the global registry as the other tests expect it
        del registry._REGISTRY["mixer"]["zz_test_identity_mixer"]
    assert main(["list", "head", "--filter", "nothing*"]) == 0
    assert capsys.readouterr().out.strip() == "head: (none)"
