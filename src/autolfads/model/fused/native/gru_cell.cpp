// The GRU cell of gru.py / loops.py as two fused CPU kernels: one pass over each step's gate
// buffer instead of five (forward) or nine (backward) elementwise operators, each a separate
// call with its own fixed cost. Same buffers, same equations (see gru.py):
//
//   forward   P = [h_n, a_r, a_z, 2 x_n] -> [h_n, r, z, n],  h' = clip(n + z (h - n))
//   backward  d = [d h_n, d a_r, d a_z, d x_n]; returns dh' z
//
// Built on first use (native/__init__.py) and registered as torch.ops.autolfads.*, so the
// TorchScript loops call them like any operator. float32 (exp by a vectorisable polynomial)
// or float64 (std::exp) CPU tensors whose rows are contiguous.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>

namespace {

// exp(x) for float, written so the compiler vectorises the loops that call it (libm's expf is
// a scalar call): x = n ln2 + r with |r| <= ln2 / 2, exp(r) by its degree-6 Taylor polynomial
// (relative error < 2e-7 over that range; sigmoid built on it is within 3e-7 of torch's),
// 2^n by the exponent bits.
inline float exp_of(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);  // NaN passes through
  // n = round(x / ln2) by the float-rounding trick (adding 1.5 * 2^23 leaves n in the low
  // mantissa bits), so that no library call blocks vectorisation.
  const float shifted = x * 1.44269504088896341f + 12582912.0f;
  const float n = shifted - 12582912.0f;
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;  // ln2 in two parts
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t n_int = __builtin_bit_cast(int32_t, shifted) - 0x4B400000;
  const float e = __builtin_bit_cast(float, __builtin_bit_cast(int32_t, p) + (n_int << 23));
  return x != x ? x : e;  // a NaN's payload would otherwise land in the exponent
}

inline double exp_of(double x) { return std::exp(x); }  // float64: exact, for the tests

template <typename T>
inline T sigmoid(T x) { return T(1) / (T(1) + exp_of(-x)); }

// Rows of a (..., W) tensor (at most 3-D) whose last dimension is contiguous.
template <typename T>
struct Rows {
  T* base;
  int64_t n;        // number of rows
  int64_t inner;    // rows per block of the next-to-last dimension
  int64_t s_inner;  // its stride
  int64_t s_outer;  // stride of the dimension before it (0 for 2-D)

  explicit Rows(const at::Tensor& t)
      : base(t.data_ptr<T>()),
        n(t.numel() / t.size(-1)),
        inner(t.dim() >= 2 ? t.size(-2) : 1),
        s_inner(t.dim() >= 2 ? t.stride(-2) : 0),
        s_outer(t.dim() >= 3 ? t.stride(-3) : 0) {
    TORCH_CHECK(t.dim() <= 3 && (t.stride(-1) == 1 || t.size(-1) == 1) && t.device().is_cpu(),
                "gru cell: CPU tensors of at most 3 dimensions, rows contiguous");
  }
  T* operator[](int64_t i) const { return base + (i / inner) * s_outer + (i % inner) * s_inner; }
};

void check_widths(const at::Tensor& P, std::initializer_list<const at::Tensor*> states,
                  int64_t H) {
  TORCH_CHECK(H > 0 && P.size(-1) == 4 * H, "gru cell: the gate buffer must be 4H wide");
  for (const at::Tensor* t : states) {
    TORCH_CHECK(t->size(-1) == H, "gru cell: states and their gradients must be H wide");
  }
}

template <typename T>
void forward_rows(const at::Tensor& P, const at::Tensor& h, const at::Tensor& h_out, int64_t H,
                  double clip) {
  check_widths(P, {&h, &h_out}, H);
  Rows<T> p(P), hp(h), ho(h_out);
  TORCH_CHECK(hp.n == p.n && ho.n == p.n, "gru cell: tensors with different numbers of rows");
  const T c = clip > 0 ? static_cast<T>(clip) : static_cast<T>(INFINITY);
  for (int64_t i = 0; i < p.n; ++i) {
    T* __restrict__ row = p[i];
    const T* __restrict__ hr = hp[i];
    T* __restrict__ out = ho[i];
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T r = sigmoid(row[H + j]);
      const T z = sigmoid(row[2 * H + j]);
      const T n = T(2) * sigmoid(row[3 * H + j] + T(2) * r * row[j]) - T(1);
      row[H + j] = r;
      row[2 * H + j] = z;
      row[3 * H + j] = n;
      const T v = n + z * (hr[j] - n);
      out[j] = v < -c ? -c : (v > c ? c : v);  // as torch.clamp: NaN passes through
    }
  }
}

template <typename T>
void backward_rows(const at::Tensor& dh, const at::Tensor& P, const at::Tensor& h_prev,
                   const at::Tensor& d, const at::Tensor& hz, int64_t H) {
  check_widths(P, {&dh, &h_prev}, H);
  TORCH_CHECK(d.size(-1) == 4 * H, "gru cell: the gate gradients must be 4H wide");
  Rows<T> g(dh), p(P), hp(h_prev), dd(d), o(hz);
  TORCH_CHECK(g.n == p.n && hp.n == p.n && dd.n == p.n,
              "gru cell: tensors with different numbers of rows");
  for (int64_t i = 0; i < p.n; ++i) {
    const T* __restrict__ gr = g[i];
    const T* __restrict__ row = p[i];
    const T* __restrict__ hr = hp[i];
    T* __restrict__ dr = dd[i];
    T* __restrict__ out = o[i];
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T hn = row[j], r = row[H + j], z = row[2 * H + j], n = row[3 * H + j];
      const T gz = gr[j] * z;
      const T d_xn = (gr[j] - gz) * (T(1) - n * n);
      dr[j] = d_xn * r;
      dr[H + j] = d_xn * hn * r * (T(1) - r);
      dr[2 * H + j] = gr[j] * (hr[j] - n) * z * (T(1) - z);
      dr[3 * H + j] = d_xn;
      out[j] = gz;
    }
  }
}

// P (..., 4H) in place; h (..., H) the previous state; h_out (..., H) the new one, clipped to
// [-clip, clip] (clip <= 0: no clipping).
void cell_forward(const at::Tensor& P, const at::Tensor& h, const at::Tensor& h_out, int64_t H,
                  double clip) {
  TORCH_CHECK(h.scalar_type() == P.scalar_type() && h_out.scalar_type() == P.scalar_type(),
              "gru cell: tensors of different dtypes");
  if (P.scalar_type() == at::kFloat) {
    forward_rows<float>(P, h, h_out, H, clip);
  } else {
    TORCH_CHECK(P.scalar_type() == at::kDouble, "gru cell: float32 or float64 only");
    forward_rows<double>(P, h, h_out, H, clip);
  }
}

// dh (..., H) the gradient of the new state; P (..., 4H) the step's [h_n, r, z, n]; h_prev
// (..., H); d (..., 4H) filled with the gate gradients. Returns dh z (the direct path to h).
at::Tensor cell_backward(const at::Tensor& dh, const at::Tensor& P, const at::Tensor& h_prev,
                         const at::Tensor& d, int64_t H) {
  TORCH_CHECK(dh.scalar_type() == P.scalar_type() && h_prev.scalar_type() == P.scalar_type() &&
                  d.scalar_type() == P.scalar_type(),
              "gru cell: tensors of different dtypes");
  at::Tensor hz = at::empty_like(dh, at::MemoryFormat::Contiguous);
  if (P.scalar_type() == at::kFloat) {
    backward_rows<float>(dh, P, h_prev, d, hz, H);
  } else {
    TORCH_CHECK(P.scalar_type() == at::kDouble, "gru cell: float32 or float64 only");
    backward_rows<double>(dh, P, h_prev, d, hz, H);
  }
  return hz;
}

}  // namespace

TORCH_LIBRARY(autolfads, m) {
  m.def("gru_cell_forward(Tensor(a!) P, Tensor h, Tensor(b!) h_out, int H, float clip) -> ()");
  m.def("gru_cell_backward(Tensor dh, Tensor P, Tensor h_prev, Tensor(a!) d, int H) -> Tensor");
}

TORCH_LIBRARY_IMPL(autolfads, CPU, m) {
  m.impl("gru_cell_forward", &cell_forward);
  m.impl("gru_cell_backward", &cell_backward);
}
