import importlib

import pytest
import torch
import torch.nn.functional as F

from archdsl.ops import dispatch
from archdsl.ops.selective_scan import (
    cpp_available,
    cpp_build_error,
    last_backend,
    selective_scan,
    selective_scan_ref,
)
from archdsl.ops.testing import assert_close


def _backends():
    params = [pytest.param("chunked", id="chunked")]
    skip = pytest.mark.skipif(not cpp_available(), reason=f"C++ kernel unavailable: {cpp_build_error()}")
    params.append(pytest.param("cpp", id="cpp", marks=skip))
    return params


BACKENDS = _backends()


def _inputs(batch, dim, N, L, groups=0, dtype=torch.float32, softplus=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, dim, L, generator=g, dtype=dtype)
    if softplus:
        delta = torch.randn(batch, dim, L, generator=g, dtype=dtype) * 0.5 - 1.0
    else:
        delta = torch.rand(batch, dim, L, generator=g, dtype=dtype) * 0.2 + 0.01
    A = -torch.exp(torch.randn(dim, N, generator=g, dtype=dtype) * 0.5)
    shape = (batch, N, L) if groups == 0 else (batch, groups, N, L)
    B = torch.randn(*shape, generator=g, dtype=dtype)
    C = torch.randn(*shape, generator=g, dtype=dtype)
    D = torch.randn(dim, generator=g, dtype=dtype)
    z = torch.randn(batch, dim, L, generator=g, dtype=dtype)
    bias = torch.rand(dim, generator=g, dtype=dtype) * 0.3  # >= 0: Δ stays positive without softplus
    return u, delta, A, B, C, D, z, bias


CASES = [
    # batch, dim, N, L, groups, use D/z/bias, softplus
    (2, 4, 3, 63, 0, True, True),
    (1, 6, 16, 64, 0, False, False),
    (2, 8, 4, 17, 2, True, True),
    (3, 4, 5, 1, 4, True, False),
    (2, 4, 8, 130, 1, False, True),
    # >= 8 channels per group: the C++ kernel's 8-channel vector blocks (plus a tail of 4)
    (2, 20, 16, 63, 0, True, True),
    (1, 32, 4, 33, 2, True, False),
    # 16-channel AVX-512 blocks plus tails inside each group, L across several 64-step tiles
    (2, 40, 16, 150, 2, True, True),
    (1, 48, 4, 129, 0, False, True),
]
IDS = [f"B{b}-D{d}-N{n}-L{t}-G{g}{'-Dzb' if e else ''}{'-sp' if s else ''}" for b, d, n, t, g, e, s in CASES]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch,dim,N,L,groups,extras,softplus", CASES, ids=IDS)
def test_fast_matches_reference(backend, batch, dim, N, L, groups, extras, softplus):
    u, delta, A, B, C, D, z, bias = _inputs(batch, dim, N, L, groups, softplus=softplus)
    leaves = [u, delta, A, B, C] + ([D, z, bias] if extras else [])
    names = ["u", "delta", "A", "B", "C"] + (["D", "z", "delta_bias"] if extras else [])

    def run(fn, **extra):
        xs = [t.detach().clone().requires_grad_() for t in leaves]
        args = dict(zip(names, xs))
        out, last = fn(
            args["u"], args["delta"], args["A"], args["B"], args["C"],
            D=args.get("D"), z=args.get("z"), delta_bias=args.get("delta_bias"),
            delta_softplus=softplus, return_last_state=True, **extra,
        )
        g = torch.Generator().manual_seed(1)
        w_out = torch.randn(out.shape, generator=g)
        w_last = torch.randn(last.shape, generator=g)
        ((out * w_out).sum() + (last * w_last).sum()).backward()
        return out, last, [x.grad for x in xs]

    ref_out, ref_last, ref_grads = run(selective_scan_ref)
    out, last, grads = run(selective_scan, backend=backend)
    assert last_backend().startswith(backend)
    assert out.dtype == u.dtype and last.shape == (batch, dim, N)
    assert_close("out", ref_out, out, atol=1e-4)
    assert_close("last_state", ref_last, last, atol=1e-4)
    for name, r, o in zip(names, ref_grads, grads):
        assert_close(f"d{name}", r, o, atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("groups", [0, 2], ids=["G0", "G2"])
def test_gradcheck_float64(backend, groups):
    u, delta, A, B, C, D, z, bias = _inputs(1, 4, 3, 7, groups, dtype=torch.float64)
    xs = [t.requires_grad_() for t in (u, delta, A, B, C, D, z, bias)]

    def f(u, delta, A, B, C, D, z, bias):
        out, last = selective_scan(
            u, delta, A, B, C, D, z, bias, delta_softplus=True, return_last_state=True, backend=backend,
            chunk_size=2,  # several chunks (and a padded one) for the chunked backend
        )
        return out, last

    # the C++ backward is hand-written: check the full Jacobian; the chunked one is autograd
    assert torch.autograd.gradcheck(f, xs, atol=1e-6, fast_mode=(backend != "cpp"))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dim", [4, 20], ids=["D4", "D20"])
def test_float64_forward_matches_reference(backend, dim):
    u, delta, A, B, C, D, z, bias = _inputs(2, dim, 5, 31, dtype=torch.float64)
    ref, rlast = selective_scan_ref(u, delta, A, B, C, D, z, bias, True, True)
    out, last = selective_scan(u, delta, A, B, C, D, z, bias, True, True, backend=backend)
    assert out.dtype == torch.float64
    assert_close("out", ref, out, atol=1e-12)
    assert_close("last", rlast, last, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_half_input_returns_input_dtype(backend):
    u, delta, A, B, C, D, z, bias = _inputs(1, 4, 4, 20)
    ref = selective_scan_ref(u, delta, A, B, C, D, delta_softplus=True)
    out = selective_scan(u.bfloat16(), delta.bfloat16(), A, B.bfloat16(), C.bfloat16(), D, delta_softplus=True, backend=backend)
    assert out.dtype == torch.bfloat16
    ref_b = selective_scan_ref(u.bfloat16(), delta.bfloat16(), A, B.bfloat16(), C.bfloat16(), D, delta_softplus=True)
    assert_close("bf16", ref_b.float(), out.float(), atol=2e-2)
    assert (ref - out.float()).abs().max() < 0.1


def test_reference_is_the_recurrence():
    # One channel, one state, written out by hand.
    u = torch.tensor([[[1.0, 2.0, -1.0]]])
    delta = torch.tensor([[[0.5, 0.1, 1.0]]])
    A = torch.tensor([[-2.0]])
    B = torch.tensor([[[1.0, -1.0, 2.0]]])
    C = torch.tensor([[[3.0, 1.0, 0.5]]])
    h, ys = 0.0, []
    for t in range(3):
        h = torch.exp(delta[0, 0, t] * A[0, 0]) * h + delta[0, 0, t] * B[0, 0, t] * u[0, 0, t]
        ys.append(C[0, 0, t] * h)
    out, last = selective_scan_ref(u, delta, A, B, C, return_last_state=True)
    assert torch.allclose(out[0, 0], torch.stack(ys))
    assert torch.allclose(last[0, 0, 0], h)
    z = torch.tensor([[[0.3, -1.0, 2.0]]])
    out2 = selective_scan_ref(u, delta, A, B, C, D=torch.tensor([0.7]), z=z)
    assert torch.allclose(out2, (out + 0.7 * u) * F.silu(z))


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_decay_is_stable(backend):
    # Decays far beyond exp() range inside a chunk: the fast path must stay finite and exact.
    u, delta, A, B, C, *_ = _inputs(1, 3, 4, 100, softplus=False)
    delta = delta * 50.0
    A = A * 10.0
    ref = selective_scan_ref(u, delta, A, B, C)
    out = selective_scan(u, delta, A, B, C, backend=backend)
    assert_close("out", ref, out, atol=1e-4)


def test_auto_backend_is_reported():
    u, delta, A, B, C, *_ = _inputs(1, 2, 2, 5)
    selective_scan(u, delta, A, B, C)
    expected = "cpp" if cpp_available() else "chunked"
    assert last_backend().startswith(expected)
    assert dispatch.last("selective_scan") == last_backend()
    assert not hasattr(selective_scan, "last_backend")     # no state on the function object
    selective_scan(u, delta, A, B, C, backend="chunked", chunk_size=4)
    assert last_backend() == "chunked(T=4)"


def test_argument_errors():
    u, delta, A, B, C, D, z, bias = _inputs(2, 4, 3, 6)
    with pytest.raises(ValueError, match=r"A must be \(dim=4, d_state\); got shape \(3, 3\)"):
        selective_scan(u, delta, A[:3], B, C)
    with pytest.raises(ValueError, match=r"B must be \(batch=2, d_state=3, L=6\)"):
        selective_scan(u, delta, A, B[..., :5], C)
    with pytest.raises(ValueError, match="groups dividing dim=4"):
        selective_scan(u, delta, A, B.unsqueeze(1).expand(2, 3, 3, 6), C)
    with pytest.raises(ValueError, match=r"D must be \(dim=4,\)"):
        selective_scan(u, delta, A, B, C, D=D[:2])
    with pytest.raises(ValueError, match="unknown selective_scan backend 'fast'"):
        selective_scan(u, delta, A, B, C, backend="fast")


@pytest.mark.parametrize(
    "env,reason",
    [({"ARCHDSL_NO_CPP": "1"}, "disabled by ARCHDSL_NO_CPP"), ({"CXX": "/bin/false"}, "CalledProcessError")],
    ids=["disabled", "no-compiler"],
)
def test_falls_back_to_chunked_without_cpp(tmp_path, env, reason):
    import os
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from archdsl.ops.selective_scan import selective_scan, last_backend, cpp_build_error\n"
        "selective_scan(torch.randn(1,2,5), torch.rand(1,2,5), -torch.rand(2,3), torch.randn(1,3,5), torch.randn(1,3,5))\n"
        "print(last_backend()); print(cpp_build_error())\n"
    )
    full_env = {**os.environ, "ARCHDSL_EXTENSIONS_DIR": str(tmp_path), **env}
    res = subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    backend, error = res.stdout.splitlines()[:2]
    assert backend.startswith("chunked(")
    assert reason in error


CPP = pytest.mark.skipif(not cpp_available(), reason=f"C++ kernel unavailable: {cpp_build_error()}")
LEAVES = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]


@CPP
@pytest.mark.parametrize("grad_of", ["z", "delta_bias", "D", "u"])
def test_cpp_gradient_of_one_input(grad_of):
    # Only one leaf requires grad: the fused kernel keeps y for dz only when needed, the
    # PyTorch epilogue/prologue backward must still give the right gradient for that leaf.
    vals = dict(zip(LEAVES, _inputs(2, 20, 8, 70, groups=2)))

    def grad(fn, **kw):
        xs = {k: v.detach().clone().requires_grad_(k == grad_of) for k, v in vals.items()}
        out = fn(*(xs[k] for k in LEAVES), True, **kw)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        return out, xs[grad_of].grad

    ref_out, ref_g = grad(selective_scan_ref)
    out, g = grad(selective_scan, backend="cpp")
    assert last_backend() == "cpp"
    assert_close("out", ref_out, out, atol=1e-4)
    assert_close(f"d{grad_of}", ref_g, g, atol=1e-4)


@CPP
def test_cpp_softplus_extremes():
    # The kernel's vectorised softplus over the whole range: far below 0 (exp underflow side),
    # around 0, and above torch's threshold of 20 (softplus(x) = x).
    u, delta, A, B, C, D, z, bias = _inputs(1, 36, 4, 40, softplus=True)
    delta = torch.linspace(-40.0, 40.0, delta.numel()).view_as(delta)
    A = A * 0.01  # keep exp(delta * A) away from 0 so the large deltas still matter
    leaves = [u, delta, A, B, C, D, z, bias]

    def run(fn, **kw):
        xs = [t.detach().clone().requires_grad_() for t in leaves]
        out = fn(*xs, True, **kw)
        out.sum().backward()
        return out, [x.grad for x in xs]

    ref_out, ref_grads = run(selective_scan_ref)
    out, grads = run(selective_scan, backend="cpp")
    scale = ref_out.abs().max().item()
    assert_close("out", ref_out, out, atol=1e-5 * scale)
    for name, r, g in zip(LEAVES, ref_grads, grads):
        assert_close(f"d{name}", r, g, atol=1e-5 * max(1.0, r.abs().max().item()))


@CPP
def test_cpp_same_kernel_with_and_without_grad():
    # No switch on requires_grad: inference, no_grad and grad-enabled calls give identical outputs.
    args = _inputs(2, 20, 16, 65)
    with torch.inference_mode():
        a = selective_scan(*args, True, True, backend="cpp")
    assert last_backend() == "cpp"
    with torch.no_grad():
        b = selective_scan(*args, True, True, backend="cpp")
    leaves = [t.clone().requires_grad_() for t in args]
    c = selective_scan(*leaves, True, True, backend="cpp")
    assert last_backend() == "cpp"
    for x, y, w in zip(a, b, c):
        assert torch.equal(x, y) and torch.equal(x, w.detach())


@CPP
@pytest.mark.parametrize("with_D,with_z,with_bias,softplus", [(False, True, False, False), (True, False, True, False)],
                         ids=["z-only", "D-bias-nosp"])
def test_cpp_gradcheck_float64_partial_epilogue(with_D, with_z, with_bias, softplus):
    u, delta, A, B, C, D, z, bias = _inputs(1, 5, 3, 6, dtype=torch.float64, softplus=softplus)
    D, z, bias = (D if with_D else None), (z if with_z else None), (bias if with_bias else None)
    xs = [t.requires_grad_() for t in (u, delta, A, B, C, D, z, bias) if t is not None]

    def f(*args):
        it = iter(args)
        u, delta, A, B, C = (next(it) for _ in range(5))
        D_ = next(it) if with_D else None
        z_ = next(it) if with_z else None
        b_ = next(it) if with_bias else None
        return selective_scan(u, delta, A, B, C, D_, z_, b_, softplus, True, backend="cpp")

    assert torch.autograd.gradcheck(f, xs, atol=1e-6)


@pytest.mark.parametrize("block_elements", [1 << 22, 3000], ids=["one_block", "several_blocks"])
@pytest.mark.parametrize("groups", [0, 2])
def test_chunked_while_tracing_matches_the_reference(monkeypatch, block_elements, groups):
    """The tracing form (fixed T, exact in-chunk sums, the state handed over without a loop) equals the
    plain recurrence, with strong decays (exponents far beyond exp's range over the sequence) and
    several blocks of chunks."""
    chunked = importlib.import_module("archdsl.ops.selective_scan.chunked")
    monkeypatch.setattr(chunked, "is_tracing", lambda: True)
    u, delta, A, B, C, D, z, bias = _inputs(2, 4, 3, 87, groups=groups)
    A = A * 8.0
    ref, h_ref = selective_scan_ref(u, delta, A, B, C, D, z, bias, True, return_last_state=True)
    info: dict = {}
    out, h = chunked.selective_scan_chunked(u, delta, A, B, C, D, z, bias, True, return_last_state=True,
                                            block_elements=block_elements, _info=info)
    assert info["chunk"] == chunked.TRACE_CHUNK
    assert_close("out", ref, out, atol=1e-5)
    assert_close("last state", h_ref, h, atol=1e-5)
