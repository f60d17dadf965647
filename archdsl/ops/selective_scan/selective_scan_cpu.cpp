// archdsl selective scan, CPU kernel (forward + backward), fp32 and fp64.
// Recurrence per (batch b, channel d, state n):
//   h_t = exp(delta_t * A_n) * h_{t-1} + delta_t * u_t * B_t[n],   y_t = sum_n C_t[n] * h_t[n]
// Inputs (contiguous): u, delta, z (Bt, D, L); A (D, N); Bm, Cm (Bt, G, L, N) (state dim last);
// D, delta_bias (D,). Channel d reads group g = d / (D / G).
// Forward (fused): delta += delta_bias, softplus(delta), the scan, out = (y + D u) * silu(z).
// Backward: the bare scan's gradients (u, delta after softplus, A, B, C) given dL/dy; the
// prologue / epilogue gradients are computed in PyTorch (cpp.py).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <omp.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace {

// exp for float, vectorizable (no libm call): Cody-Waite range reduction + degree-6 polynomial,
// relative error ~2e-7 on the whole range; inputs below -87 flush to ~0 (exp(-87) = 1.6e-38).
static inline float fast_exp(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float log2e = 1.44269504088896341f;
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to nearest
  float fn = x * log2e + shifter;
  fn = fn - shifter;
  float r = x - fn * 0.693359375f;
  r = r - fn * (-2.12194440e-4f);
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits = ((int32_t)fn + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(float));
  return p * scale;
}
static inline double fast_exp(double x) { return std::exp(x); }

// Fused forward on the (Bt, D, L) layout. Prologue: delta += delta_bias, softplus; scan; epilogue:
// out = (y + D u) * silu(z). Vectorised across W neighbouring channels (lanes) of one group: every
// lane has its own delta and A, all lanes share B_t[n], C_t[n] (broadcast), so there is no
// horizontal reduction. u/delta/z rows are transposed into (time, lane) tiles of TL steps inside
// the kernel (L1-resident), so no full-size transposes are needed.
constexpr int64_t TL = 64;

template <typename T>
struct FusedArgs {
  const T *u, *delta, *A, *Bm, *Cm, *Dv, *z, *bias;  // Dv, z, bias may be null
  T *out, *y, *last;                                  // y may be null (only kept for backward)
  int64_t Bt, D, L, N, G;
  bool softplus;
};

template <typename T>
static inline T softplus_s(T x) {  // torch's F.softplus (beta 1, threshold 20)
  return x > T(20) ? x : std::log1p(std::exp(x));
}
template <typename T>
static inline T silu_s(T x) { return x / (T(1) + std::exp(-x)); }

// Generic block (any T, W lanes; W = 1 for the tail channels of a group).
template <typename T, int W>
static void fused_block(const FusedArgs<T>& a, int64_t b, int64_t g, int64_t d0) {
  const int64_t L = a.L, N = a.N, D = a.D;
  std::vector<T> hv(N * W, T(0)), Av(N * W);
  T* h = hv.data();
  T* Ab = Av.data();
  for (int64_t n = 0; n < N; ++n)
    for (int j = 0; j < W; ++j) Ab[n * W + j] = a.A[(d0 + j) * N + n];
  const T* Bb = a.Bm + (b * a.G + g) * L * N;
  const T* Cb = a.Cm + (b * a.G + g) * L * N;
  T dtile[TL * W], utile[TL * W], ytile[TL * W];
  for (int64_t t0 = 0; t0 < L; t0 += TL) {
    const int64_t tl = std::min(TL, L - t0);
    for (int j = 0; j < W; ++j) {
      const int64_t row = (b * D + d0 + j) * L + t0;
      const T bj = a.bias ? a.bias[d0 + j] : T(0);
      for (int64_t t = 0; t < tl; ++t) {
        const T x = a.delta[row + t] + bj;
        dtile[t * W + j] = a.softplus ? softplus_s(x) : x;
        utile[t * W + j] = a.u[row + t];
      }
    }
    for (int64_t t = 0; t < tl; ++t) {
      const T* Bt_ = Bb + (t0 + t) * N;
      const T* Ct_ = Cb + (t0 + t) * N;
      T dv[W], duv[W], acc[W];
      for (int j = 0; j < W; ++j) {
        dv[j] = dtile[t * W + j];
        duv[j] = dv[j] * utile[t * W + j];
        acc[j] = T(0);
      }
      for (int64_t n = 0; n < N; ++n) {
        const T bn = Bt_[n], cn = Ct_[n];
        T* hn = h + n * W;
        const T* an = Ab + n * W;
#pragma omp simd
        for (int j = 0; j < W; ++j) {
          hn[j] = fast_exp(dv[j] * an[j]) * hn[j] + duv[j] * bn;
          acc[j] += cn * hn[j];
        }
      }
      for (int j = 0; j < W; ++j) ytile[t * W + j] = acc[j];
    }
    for (int j = 0; j < W; ++j) {
      const int64_t row = (b * D + d0 + j) * L + t0;
      const T Dj = a.Dv ? a.Dv[d0 + j] : T(0);
      for (int64_t t = 0; t < tl; ++t) {
        const T yv = ytile[t * W + j];
        if (a.y) a.y[row + t] = yv;
        T o = yv + Dj * utile[t * W + j];
        if (a.z) o *= silu_s(a.z[row + t]);
        a.out[row + t] = o;
      }
    }
  }
  for (int j = 0; j < W; ++j)
    for (int64_t n = 0; n < N; ++n) a.last[(b * D + d0 + j) * N + n] = h[n * W + j];
}

// The float block with GCC/Clang vector extensions: VW channels per vector, exp / softplus / silu
// computed on whole vectors. VW = 16 (one AVX-512 register) when compiled with -mavx512f, else 8.
#if defined(__AVX512F__)
#define VW 16
#else
#define VW 8
#endif
typedef float vf __attribute__((vector_size(VW * 4)));
typedef int32_t vi __attribute__((vector_size(VW * 4)));

static inline vf vexp(vf x) {
  const vf lo = vf{} - 87.0f, hi = vf{} + 88.0f;
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const float shifter = 12582912.0f;
  vf fn = x * 1.44269504088896341f + shifter;
  fn = fn - shifter;
  vf r = x - fn * 0.693359375f;
  r = r - fn * (-2.12194440e-4f);
  vf p = r * (1.0f / 720.0f) + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  vi bits = (__builtin_convertvector(fn, vi) + 127) << 23;
  return p * (vf)bits;  // same-size vector cast = bit reinterpretation (GCC/Clang)
}

// softplus(x) = max(x, 0) + log1p(exp(-|x|)); log1p(v) = 2 atanh(s), s = v / (2 + v) in (0, 1/3]
// (no rounding of 1 + v), atanh by its odd series to s^15 (truncation < 1e-9).
static inline vf vsoftplus(vf x) {
  const vf zero = vf{};
  const vf ax = x < zero ? -x : x;
  const vf v = vexp(-ax);
  const vf s = v / (v + 2.0f);
  const vf s2 = s * s;
  vf p = s2 * (1.0f / 15.0f) + 1.0f / 13.0f;
  p = p * s2 + 1.0f / 11.0f;
  p = p * s2 + 1.0f / 9.0f;
  p = p * s2 + 1.0f / 7.0f;
  p = p * s2 + 1.0f / 5.0f;
  p = p * s2 + 1.0f / 3.0f;
  p = p * s2 + 1.0f;
  return (x > zero ? x : zero) + 2.0f * s * p;
}

static inline vf vsilu(vf x) { return x / (vexp(-x) + 1.0f); }

static void fused_block_vec(const FusedArgs<float>& a, int64_t b, int64_t g, int64_t d0) {
  const int64_t L = a.L, N = a.N, D = a.D;
  std::vector<vf> hv(N, vf{}), Av(N);
  for (int64_t n = 0; n < N; ++n)
    for (int j = 0; j < VW; ++j) Av[n][j] = a.A[(d0 + j) * N + n];
  vf* h = hv.data();
  const vf* Ab = Av.data();
  const float* Bb = a.Bm + (b * a.G + g) * L * N;
  const float* Cb = a.Cm + (b * a.G + g) * L * N;
  vf biasv = vf{}, Dvec = vf{};
  for (int j = 0; j < VW; ++j) {
    if (a.bias) biasv[j] = a.bias[d0 + j];
    if (a.Dv) Dvec[j] = a.Dv[d0 + j];
  }
  alignas(64) vf dtile[TL], utile[TL], ytile[TL], ztile[TL];
  float* df = reinterpret_cast<float*>(dtile);
  float* uf = reinterpret_cast<float*>(utile);
  float* yf = reinterpret_cast<float*>(ytile);
  float* zf = reinterpret_cast<float*>(ztile);
  const int64_t base = (b * D + d0) * L;
  for (int64_t t0 = 0; t0 < L; t0 += TL) {
    const int64_t tl = std::min(TL, L - t0);
    // gather VW rows of tl steps into (time, lane) tiles
    for (int j = 0; j < VW; ++j) {
      const float* dr = a.delta + base + j * L + t0;
      const float* ur = a.u + base + j * L + t0;
      for (int64_t t = 0; t < tl; ++t) {
        df[t * VW + j] = dr[t];
        uf[t * VW + j] = ur[t];
      }
      if (a.z) {
        const float* zr = a.z + base + j * L + t0;
        for (int64_t t = 0; t < tl; ++t) zf[t * VW + j] = zr[t];
      }
    }
    if (a.softplus) {
      for (int64_t t = 0; t < tl; ++t) dtile[t] = vsoftplus(dtile[t] + biasv);
    } else if (a.bias) {
      for (int64_t t = 0; t < tl; ++t) dtile[t] += biasv;
    }
    for (int64_t t = 0; t < tl; ++t) {
      const vf dv = dtile[t];
      const vf duv = dv * utile[t];
      const float* Bt_ = Bb + (t0 + t) * N;
      const float* Ct_ = Cb + (t0 + t) * N;
      vf acc = vf{};
      for (int64_t n = 0; n < N; ++n) {
        h[n] = vexp(dv * Ab[n]) * h[n] + duv * Bt_[n];
        acc += h[n] * Ct_[n];
      }
      ytile[t] = acc;
    }
    if (a.y) {
      for (int j = 0; j < VW; ++j) {
        float* yr = a.y + base + j * L + t0;
        for (int64_t t = 0; t < tl; ++t) yr[t] = yf[t * VW + j];
      }
    }
    if (a.Dv) {
      for (int64_t t = 0; t < tl; ++t) ytile[t] += Dvec * utile[t];
    }
    if (a.z) {
      for (int64_t t = 0; t < tl; ++t) ytile[t] *= vsilu(ztile[t]);
    }
    for (int j = 0; j < VW; ++j) {
      float* orow = a.out + base + j * L + t0;
      for (int64_t t = 0; t < tl; ++t) orow[t] = yf[t * VW + j];
    }
  }
  for (int j = 0; j < VW; ++j)
    for (int64_t n = 0; n < N; ++n) a.last[(b * D + d0 + j) * N + n] = h[n][j];
}

template <typename T>
void fused_kernel(const FusedArgs<T>& a) {
  constexpr int W = std::is_same<T, float>::value ? VW : 4;
  const int64_t per_group = a.D / a.G;
  const int64_t full = per_group / W, tail = per_group % W;  // blocks never straddle groups
  const int64_t per_batch = a.G * (full + tail);
  const int64_t ntasks = a.Bt * per_batch;
  // dynamic scheduling: robust when the cores are shared (a late thread does not stall the rest)
#pragma omp parallel for schedule(dynamic, 1) num_threads(at::get_num_threads())
  for (int64_t task = 0; task < ntasks; ++task) {
    const int64_t b = task / per_batch, r = task % per_batch;
    const int64_t g = r / (full + tail), i = r % (full + tail);
    if (i < full) {
      if constexpr (std::is_same<T, float>::value)
        fused_block_vec(a, b, g, g * per_group + i * W);
      else
        fused_block<T, W>(a, b, g, g * per_group + i * W);
    } else
      fused_block<T, 1>(a, b, g, g * per_group + full * W + (i - full));
  }
}

// Backward. Parallel over (batch, group) so dB/dC of a group are written by one task;
// dA is accumulated per batch (dA_b: (Bt, D, N)) and summed over batch in Python.
template <typename T>
void bwd_kernel(const T* u, const T* delta, const T* A, const T* Bm, const T* Cm, const T* dy,
                const T* dlast, T* du, T* ddelta, T* dA_b, T* dB, T* dC, int64_t Bt, int64_t D,
                int64_t L, int64_t N, int64_t G) {
  const int64_t per_group = D / G;
#pragma omp parallel num_threads(at::get_num_threads())
  {
    std::vector<T> hs((L + 1) * N), g(N), a(N);
#pragma omp for schedule(dynamic, 1)
    for (int64_t bg = 0; bg < Bt * G; ++bg) {
      const int64_t b = bg / G, grp = bg % G;
      const T* Bb = Bm + bg * L * N;
      const T* Cb = Cm + bg * L * N;
      T* dBb = dB + bg * L * N;
      T* dCb = dC + bg * L * N;
      for (int64_t d = grp * per_group; d < (grp + 1) * per_group; ++d) {
        const int64_t bd = b * D + d;
        const T* ub = u + bd * L;
        const T* db = delta + bd * L;
        const T* dyb = dy + bd * L;
        const T* Ad = A + d * N;
        T* dub = du + bd * L;
        T* ddb = ddelta + bd * L;
        T* dAd = dA_b + bd * N;
        // forward recompute, keeping every state: hs[t+1] = h_t, hs[0] = 0
        T* H = hs.data();
        for (int64_t n = 0; n < N; ++n) H[n] = T(0);
        for (int64_t t = 0; t < L; ++t) {
          const T dt = db[t], dtu = dt * ub[t];
          const T* Bt_ = Bb + t * N;
          const T* hprev = H + t * N;
          T* hcur = H + (t + 1) * N;
#pragma omp simd
          for (int64_t n = 0; n < N; ++n) hcur[n] = fast_exp(dt * Ad[n]) * hprev[n] + dtu * Bt_[n];
        }
        T* gp = g.data();
        T* ap = a.data();
        for (int64_t n = 0; n < N; ++n) {
          gp[n] = dlast ? dlast[bd * N + n] : T(0);
          dAd[n] = T(0);
        }
        for (int64_t t = L - 1; t >= 0; --t) {
          const T dt = db[t], ut = ub[t], dyt = dyb[t];
          const T* Bt_ = Bb + t * N;
          const T* Ct_ = Cb + t * N;
          T* dBt = dBb + t * N;
          T* dCt = dCb + t * N;
          const T* hprev = H + t * N;
          const T* hcur = H + (t + 1) * N;
          T s_ddelta = T(0), s_du = T(0);
#pragma omp simd
          for (int64_t n = 0; n < N; ++n) ap[n] = fast_exp(dt * Ad[n]);
#pragma omp simd reduction(+ : s_ddelta, s_du)
          for (int64_t n = 0; n < N; ++n) {
            const T gn = gp[n] + dyt * Ct_[n];  // dL/dh_t
            dCt[n] += dyt * hcur[n];
            dBt[n] += gn * dt * ut;
            s_du += gn * Bt_[n];
            const T da = gn * hprev[n] * ap[n];  // dL/d(log a_t) = dL/da * a
            s_ddelta += gn * Bt_[n] * ut + da * Ad[n];
            dAd[n] += da * dt;
            gp[n] = gn * ap[n];
          }
          dub[t] = s_du * dt;
          ddb[t] = s_ddelta;
        }
      }
    }
  }
}

void check(const at::Tensor& t, const char* name, at::ScalarType st) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.scalar_type() == st, name, " has dtype ", t.scalar_type(), ", expected ", st);
}

void check_opt(const c10::optional<at::Tensor>& t, const char* name, at::ScalarType st,
               int64_t numel) {
  if (!t.has_value() || !t->defined()) return;
  check(*t, name, st);
  TORCH_CHECK(t->numel() == numel, name, " has ", t->numel(), " elements, expected ", numel);
}

const at::Tensor* opt_ptr(const c10::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? &*t : nullptr;
}

// Returns (out, last_state, y); y (the scan output before D / z) is empty unless return_y.
std::tuple<at::Tensor, at::Tensor, at::Tensor> ss_fwd(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& Bm,
    const at::Tensor& Cm, const c10::optional<at::Tensor>& Dv, const c10::optional<at::Tensor>& z,
    const c10::optional<at::Tensor>& bias, bool softplus, bool return_y) {
  const auto st = u.scalar_type();
  for (auto p : {std::make_pair(&u, "u"), std::make_pair(&delta, "delta"), std::make_pair(&A, "A"),
                 std::make_pair(&Bm, "B"), std::make_pair(&Cm, "C")})
    check(*p.first, p.second, st);
  const int64_t Bt = u.size(0), D = u.size(1), L = u.size(2), N = A.size(1), G = Bm.size(1);
  TORCH_CHECK(delta.sizes() == u.sizes(), "delta must have the shape of u");
  TORCH_CHECK(A.dim() == 2 && A.size(0) == D, "bad A shape");
  TORCH_CHECK(Bm.dim() == 4 && Bm.sizes() == Cm.sizes() && Bm.size(0) == Bt && Bm.size(2) == L &&
                  Bm.size(3) == N && G >= 1 && D % G == 0,
              "bad B/C shape");
  check_opt(Dv, "D", st, D);
  check_opt(bias, "delta_bias", st, D);
  check_opt(z, "z", st, u.numel());
  auto out = at::empty_like(u);
  auto last = at::empty({Bt, D, N}, u.options());
  auto y = return_y ? at::empty_like(u) : at::empty({0}, u.options());
  AT_DISPATCH_FLOATING_TYPES(st, "archdsl_ss_fwd", [&] {
    FusedArgs<scalar_t> a;
    a.u = u.data_ptr<scalar_t>();
    a.delta = delta.data_ptr<scalar_t>();
    a.A = A.data_ptr<scalar_t>();
    a.Bm = Bm.data_ptr<scalar_t>();
    a.Cm = Cm.data_ptr<scalar_t>();
    a.Dv = opt_ptr(Dv) ? opt_ptr(Dv)->data_ptr<scalar_t>() : nullptr;
    a.z = opt_ptr(z) ? opt_ptr(z)->data_ptr<scalar_t>() : nullptr;
    a.bias = opt_ptr(bias) ? opt_ptr(bias)->data_ptr<scalar_t>() : nullptr;
    a.out = out.data_ptr<scalar_t>();
    a.y = return_y ? y.data_ptr<scalar_t>() : nullptr;
    a.last = last.data_ptr<scalar_t>();
    a.Bt = Bt; a.D = D; a.L = L; a.N = N; a.G = G;
    a.softplus = softplus;
    fused_kernel<scalar_t>(a);
  });
  return {out, last, y};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> ss_bwd(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& Bm,
    const at::Tensor& Cm, const at::Tensor& dy, const c10::optional<at::Tensor>& dlast) {
  const auto st = u.scalar_type();
  check(dy, "dy", st);
  const int64_t Bt = u.size(0), D = u.size(1), L = u.size(2), N = A.size(1), G = Bm.size(1);
  const bool has_last = dlast.has_value() && dlast->defined();
  if (has_last) check(*dlast, "dlast", st);
  auto du = at::empty_like(u), ddelta = at::empty_like(delta);
  auto dA_b = at::empty({Bt, D, N}, u.options());
  auto dB = at::zeros_like(Bm), dC = at::zeros_like(Cm);
  AT_DISPATCH_FLOATING_TYPES(st, "archdsl_ss_bwd", [&] {
    bwd_kernel<scalar_t>(u.data_ptr<scalar_t>(), delta.data_ptr<scalar_t>(), A.data_ptr<scalar_t>(),
                         Bm.data_ptr<scalar_t>(), Cm.data_ptr<scalar_t>(), dy.data_ptr<scalar_t>(),
                         has_last ? dlast->data_ptr<scalar_t>() : nullptr, du.data_ptr<scalar_t>(),
                         ddelta.data_ptr<scalar_t>(), dA_b.data_ptr<scalar_t>(),
                         dB.data_ptr<scalar_t>(), dC.data_ptr<scalar_t>(), Bt, D, L, N, G);
  });
  return {du, ddelta, dA_b.sum(0), dB, dC};
}

}  // namespace

TORCH_LIBRARY(archdsl_selective_scan, m) {
  m.def(
      "fwd(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
      "Tensor? delta_bias, bool delta_softplus, bool return_y) -> (Tensor, Tensor, Tensor)",
      &ss_fwd);
  m.def(
      "bwd(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor dy, Tensor? dlast) -> "
      "(Tensor, Tensor, Tensor, Tensor, Tensor)",
      &ss_bwd);
}
