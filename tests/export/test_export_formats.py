"""ONNX (dynamo and legacy exporters, checked with onnxruntime), a dynamic height / width, the real
form of RoPE used while tracing, and torch.compile(fullgraph=True) of MLLA-T without graph breaks."""
from __future__ import annotations

import pytest
import torch
from export_helpers import ROOT, tiny_model

from archdsl.compiler import build_model
from archdsl.export import export_onnx, save_onnx
from archdsl.ops.rope import apply_rope, rope2d_cos_sin, rotate_pairs

MLLA_T, SWIN_T = ROOT / "specs" / "mlla_t.yaml", ROOT / "specs" / "swin_t.yaml"


def _ort(path):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])


def test_real_rope_equals_the_complex_form():
    cos, sin = rope2d_cos_sin(3, 5, 16)
    x = torch.randn(2, 15, 16)
    complex_form = apply_rope(x, cos, sin)  # eager fp32: one complex multiply
    real_form = rotate_pairs(x.reshape(2, 15, 8, 2), cos, sin).flatten(-2)
    torch.testing.assert_close(real_form, complex_form, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("path, dynamic_hw", [(MLLA_T, True), (SWIN_T, False)], ids=["mlla_t-dynamic-hw", "swin_t"])
def test_onnx_dynamo_export_runs_in_onnxruntime(tmp_path, path, dynamic_hw):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    model = tiny_model(path)
    out = tmp_path / "m.onnx"
    size = (64, 96) if dynamic_hw else (32, 64)  # a dynamic H / W needs an example of >= 2 strides
    save_onnx(export_onnx(model, torch.randn(2, 3, *size), dynamic_hw=dynamic_hw), str(out))
    session = _ort(out)
    sizes = [(3, 64, 96), (1, 96, 64)] if dynamic_hw else [(3, 32, 64), (1, 32, 64)]
    for b, h, w in sizes:
        x = torch.randn(b, 3, h, w)
        with torch.no_grad():
            ref = model(x)
        torch.testing.assert_close(session(x), ref, atol=1e-4, rtol=1e-4)


def test_legacy_onnx_exporter_handles_rope(tmp_path):
    """The TorchScript-based exporter has no complex type: RoPE is traced in its real form."""
    pytest.importorskip("onnxruntime")
    model = tiny_model(MLLA_T)
    x = torch.randn(2, 3, 32, 64)
    out = tmp_path / "legacy.onnx"
    torch.onnx.export(model, (x,), str(out), dynamo=False, input_names=["img"],
                      dynamic_axes={"img": {0: "batch"}})
    x3 = torch.randn(3, 3, 32, 64)
    with torch.no_grad():
        ref = model(x3)
    torch.testing.assert_close(_ort(out)(x3), ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("mixer", ["linear_attention"])
def test_mlla_t_compiles_with_fullgraph(mixer):
    """fullgraph=True raises on any graph break; the eager backend checks the capture, not codegen."""
    torch._dynamo.reset()
    model = build_model(MLLA_T, ["stages.depths=[1,1,1,1]", "stages.embed_dim=16", "stages.heads=[1,1,2,2]",
                                 "num_classes=5", f"mixer.type={mixer}"]).eval()
    x = torch.randn(2, 3, 32, 64)
    with torch.no_grad():
        ref = model(x)
        out = torch.compile(model, fullgraph=True, backend="eager")(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        again = model(x)
    assert type(again) is torch.Tensor and torch.equal(again, ref)
