import pytest
import torch

from archdsl.ops.linear_attention import (
    FEATURE_MAP_NAMES,
    causal_linear_attention,
    causal_linear_attention_ref,
    feature_map,
    linear_attention,
    linear_attention_ref,
)
from archdsl.ops.testing import assert_close

SHAPES = [(1, 1, 5, 3, 4), (2, 3, 63, 8, 5), (2, 2, 16, 4, 4)]
IDS = [f"B{b}-H{h}-N{n}-K{k}-V{v}" for b, h, n, k, v in SHAPES]


def _qkv(B, H, N, K, V, dtype=torch.float32, positive=True):
    q = torch.randn(B, H, N, K, dtype=dtype)
    k = torch.randn(B, H, N, K, dtype=dtype)
    v = torch.randn(B, H, N, V, dtype=dtype)
    if positive:
        q, k = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    return q, k, v


@pytest.mark.parametrize("B,H,N,K,V", SHAPES, ids=IDS)
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_noncausal_matches_quadratic(B, H, N, K, V, normalize, reduction):
    q, k, v = _qkv(B, H, N, K, V)
    ref = linear_attention_ref(q, k, v, normalize=normalize, reduction=reduction)
    out = linear_attention(q, k, v, normalize=normalize, reduction=reduction)
    assert_close("o", ref, out, atol=1e-4 if normalize else 1e-3 * N)


def test_noncausal_separate_normalizer_features():
    q, k, v = _qkv(2, 2, 10, 4, 3)
    qn, kn = q + 1.0, k * 2.0
    ref = linear_attention_ref(q, k, v, q_norm=qn, k_norm=kn, eps=1e-3)
    out = linear_attention(q, k, v, q_norm=qn, k_norm=kn, eps=1e-3)
    assert_close("o", ref, out, atol=1e-5)
    manual = (q @ k.transpose(-1, -2) @ v) / ((qn @ kn.transpose(-1, -2)).sum(-1, keepdim=True) + 1e-3)
    assert_close("manual", manual, out, atol=1e-5)


def test_normalized_rows_are_convex_combinations():
    q, k, _ = _qkv(1, 1, 7, 3, 1)
    v = torch.ones(1, 1, 7, 2)
    out = linear_attention(q, k, v, normalize=True, eps=0.0)
    assert_close("ones", torch.ones_like(out), out, atol=1e-5)


@pytest.mark.parametrize("B,H,N,K,V", SHAPES, ids=IDS)
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("chunk_size", [1, 8, 64])
def test_causal_matches_loop(B, H, N, K, V, normalize, chunk_size):
    q, k, v = _qkv(B, H, N, K, V)
    ref = causal_linear_attention_ref(q, k, v, normalize=normalize)
    out = causal_linear_attention(q, k, v, normalize=normalize, chunk_size=chunk_size)
    assert_close("o", ref, out, atol=1e-4 if normalize else 1e-3)


def test_causal_gradcheck():
    q, k, v = (t.requires_grad_() for t in _qkv(1, 2, 7, 3, 2, dtype=torch.float64))
    assert torch.autograd.gradcheck(
        lambda a, b, c: causal_linear_attention(a, b, c, chunk_size=3), (q, k, v), fast_mode=True
    )


def test_noncausal_gradcheck():
    q, k, v = (t.requires_grad_() for t in _qkv(1, 2, 6, 3, 2, dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda a, b, c: linear_attention(a, b, c), (q, k, v), fast_mode=True)


def test_shape_errors():
    q, k, v = _qkv(1, 1, 4, 3, 2)
    with pytest.raises(ValueError, match="q and k must have the same shape"):
        linear_attention(q, k[..., :2], v)
    with pytest.raises(ValueError, match="v must be"):
        linear_attention(q, k, v[:, :, :3])
    with pytest.raises(ValueError, match="reduction must be one of"):
        linear_attention(q, k, v, reduction="max")


@pytest.mark.parametrize("name", FEATURE_MAP_NAMES)
def test_feature_maps(name):
    x = torch.randn(2, 3, 5)
    y = feature_map(name)(x)
    expected = {
        "elu_plus_one": torch.where(x > 0, x + 1, torch.exp(x)),
        "relu": x.clamp_min(0),
        "identity": x,
        "softmax": torch.exp(x) / torch.exp(x).sum(-1, keepdim=True),
    }[name]
    assert_close(name, expected, y, atol=1e-6)


def test_feature_map_unknown_name():
    with pytest.raises(ValueError, match=r"unknown feature map 'elu'; expected one of: elu_plus_one, relu, identity, softmax"):
        feature_map("elu")
