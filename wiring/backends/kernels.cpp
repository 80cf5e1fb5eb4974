// Native CPU kernels of the wiring engine (optional; see wiring/backends/kernels.py).
//
// Plain C++ with a C ABI and OpenMP, no PyTorch headers: wiring.backends.kernels compiles this
// file once per machine with the system's C++ compiler and calls it through ctypes on
// contiguous CPU tensors. Every function exists for float (suffix _f32) and double (_f64).
//
// Layout: node-major feature maps, x[node][sample][H*W], contiguous.
//
//   wr_spmm            out = A x (or out += A x) for a CSR matrix A and dense rows x,
//                      features in cache-sized chunks, no per-edge message buffer.
//   wr_node_forward    per (node, sample) plane: instance norm (affine per node) ->
//                      ReLU -> 3x3 depthwise conv (padding 1, stride 1), in one pass;
//                      saves the plane's mean and 1/std for the backward.
//   wr_node_backward   the gradients of that op to its input, the norm's affine
//                      parameters and the conv kernel, recomputing the activations.
//   wr_sampled_dot     <a[i], b[j]> for a list of (i, j) pairs: the real edges' weight gradient.
//   wr_topk_mask       the k largest |w| as a byte mask (selection, not a sort).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace {

constexpr int64_t CHUNK = 1024;  // features per block: a block of every source row stays in L2

// 64-byte vectors (GCC/Clang vector extensions) that may load from any element address
template <typename T>
struct Vec;
template <>
struct Vec<float> {
  typedef float type __attribute__((vector_size(64), aligned(4)));
};
template <>
struct Vec<double> {
  typedef double type __attribute__((vector_size(64), aligned(8)));
};

template <typename T>
void spmm(int64_t rows, int64_t features, const int64_t* rowptr, const int64_t* col, const T* val,
          const T* x, T* out, int accumulate, int threads) {
  typedef typename Vec<T>::type V;
  constexpr int64_t L = 64 / sizeof(T), TILE = 4 * L;  // four vector registers of output per pass
  const int64_t chunks = (features + CHUNK - 1) / CHUNK;
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
  for (int64_t c = 0; c < chunks; ++c) {
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t end = std::min(features, (c + 1) * CHUNK);
      const int64_t j0 = rowptr[r], j1 = rowptr[r + 1];
      int64_t f = c * CHUNK;
      for (; f + TILE <= end; f += TILE) {
        T* o = out + r * features + f;
        V a0 = {}, a1 = {}, a2 = {}, a3 = {};
        if (accumulate) {
          a0 = *(const V*)(o), a1 = *(const V*)(o + L), a2 = *(const V*)(o + 2 * L), a3 = *(const V*)(o + 3 * L);
        }
        for (int64_t j = j0; j < j1; ++j) {
          const T w = val[j];
          const T* xr = x + col[j] * features + f;
          a0 += w * *(const V*)(xr);
          a1 += w * *(const V*)(xr + L);
          a2 += w * *(const V*)(xr + 2 * L);
          a3 += w * *(const V*)(xr + 3 * L);
        }
        *(V*)(o) = a0, *(V*)(o + L) = a1, *(V*)(o + 2 * L) = a2, *(V*)(o + 3 * L) = a3;
      }
      if (f < end) {  // a ragged tail shorter than a tile
        T* o = out + r * features + f;
        const int64_t len = end - f;
        if (!accumulate) {
          for (int64_t i = 0; i < len; ++i) o[i] = T(0);
        }
        for (int64_t j = j0; j < j1; ++j) {
          const T w = val[j];
          const T* xr = x + col[j] * features + f;
          for (int64_t i = 0; i < len; ++i) o[i] += w * xr[i];
        }
      }
    }
  }
}

// Any map size, through a zero-padded scratch plane. (8x8 maps take node_forward8.)
template <typename T>
void node_forward(int64_t nodes, int64_t batch, int64_t height, int64_t width, const T* x, const T* gamma,
                  const T* beta, const T* kernel, double eps, T* y, T* mean, T* rstd, int threads) {
  const int64_t hw = height * width, pw = width + 2;
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> pad((height + 2) * pw, T(0));
#pragma omp for collapse(2) schedule(static)
    for (int64_t v = 0; v < nodes; ++v) {
      for (int64_t s = 0; s < batch; ++s) {
        const int64_t plane = v * batch + s;
        const T* xp = x + plane * hw;
        T* yp = y + plane * hw;
        T m = 0;
#pragma omp simd reduction(+ : m)
        for (int64_t p = 0; p < hw; ++p) m += xp[p];
        m /= T(hw);
        T var = 0;
#pragma omp simd reduction(+ : var)
        for (int64_t p = 0; p < hw; ++p) var += (xp[p] - m) * (xp[p] - m);
        var /= T(hw);
        const T rs = T(1) / std::sqrt(var + T(eps));
        mean[plane] = m;
        rstd[plane] = rs;
        const T scale = gamma[v] * rs, shift = beta[v] - m * scale;
        for (int64_t i = 0; i < height; ++i)
          for (int64_t j = 0; j < width; ++j)
            pad[(i + 1) * pw + j + 1] = std::max(T(0), xp[i * width + j] * scale + shift);
        const T* k = kernel + v * 9;
        for (int64_t i = 0; i < height; ++i) {
          const T* r0 = pad.data() + i * pw;
          const T* r1 = r0 + pw;
          const T* r2 = r1 + pw;
          for (int64_t j = 0; j < width; ++j)
            yp[i * width + j] = k[0] * r0[j] + k[1] * r0[j + 1] + k[2] * r0[j + 2] + k[3] * r1[j] +
                                k[4] * r1[j + 1] + k[5] * r1[j + 2] + k[6] * r2[j] + k[7] * r2[j + 1] +
                                k[8] * r2[j + 2];
        }
      }
    }
  }
}

template <typename T>
void node_backward(int64_t nodes, int64_t batch, int64_t height, int64_t width, const T* x, const T* gamma,
                   const T* beta, const T* kernel, const T* mean, const T* rstd, const T* gy, T* gx,
                   T* ggamma, T* gbeta, T* gkernel, int threads) {
  const int64_t hw = height * width, pw = width + 2;
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> apad((height + 2) * pw, T(0)), gpad((height + 2) * pw, T(0)), xhat(hw), gpre(hw);
#pragma omp for schedule(static)
    for (int64_t v = 0; v < nodes; ++v) {
      const T* k = kernel + v * 9;
      const T g = gamma[v], b = beta[v];
      double sum_gamma = 0, sum_beta = 0, sum_k[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t s = 0; s < batch; ++s) {
        const int64_t plane = v * batch + s;
        const T* xp = x + plane * hw;
        const T* gyp = gy + plane * hw;
        T* gxp = gx + plane * hw;
        const T m = mean[plane], rs = rstd[plane];
        for (int64_t i = 0; i < height; ++i)
          for (int64_t j = 0; j < width; ++j) {
            const int64_t p = i * width + j;
            xhat[p] = (xp[p] - m) * rs;
            apad[(i + 1) * pw + j + 1] = std::max(T(0), g * xhat[p] + b);
            gpad[(i + 1) * pw + j + 1] = gyp[p];
          }
        // kernel gradient: correlation of the output gradient with the padded activation
        for (int64_t di = 0; di < 3; ++di)
          for (int64_t dj = 0; dj < 3; ++dj) {
            T acc = 0;
            for (int64_t i = 0; i < height; ++i) {
              const T* ar = apad.data() + (i + di) * pw + dj;
              const T* gr = gyp + i * width;
#pragma omp simd reduction(+ : acc)
              for (int64_t j = 0; j < width; ++j) acc += gr[j] * ar[j];
            }
            sum_k[di * 3 + dj] += acc;
          }
        // activation gradient (transposed conv), through ReLU, to the norm's affine output
        for (int64_t i = 0; i < height; ++i) {
          const T* r0 = gpad.data() + i * pw;  // rows i-1, i, i+1 of the gradient (padded)
          const T* r1 = r0 + pw;
          const T* r2 = r1 + pw;
#pragma omp simd
          for (int64_t j = 0; j < width; ++j) {
            const int64_t p = i * width + j;
            const T ga = k[8] * r0[j] + k[7] * r0[j + 1] + k[6] * r0[j + 2] + k[5] * r1[j] + k[4] * r1[j + 1] +
                         k[3] * r1[j + 2] + k[2] * r2[j] + k[1] * r2[j + 1] + k[0] * r2[j + 2];
            gpre[p] = (g * xhat[p] + b) > T(0) ? ga : T(0);
          }
        }
        T plane_gamma = 0, plane_beta = 0, mean1 = 0, mean2 = 0;
#pragma omp simd reduction(+ : plane_gamma, plane_beta, mean1, mean2)
        for (int64_t p = 0; p < hw; ++p) {
          plane_beta += gpre[p];
          plane_gamma += gpre[p] * xhat[p];
          mean1 += gpre[p] * g;
          mean2 += gpre[p] * g * xhat[p];
        }
        sum_gamma += plane_gamma;
        sum_beta += plane_beta;
        mean1 /= T(hw);
        mean2 /= T(hw);
        #pragma omp simd
        for (int64_t p = 0; p < hw; ++p) gxp[p] = rs * (gpre[p] * g - mean1 - xhat[p] * mean2);
      }
      ggamma[v] = T(sum_gamma);
      gbeta[v] = T(sum_beta);
      for (int d = 0; d < 9; ++d) gkernel[v * 9 + d] = T(sum_k[d]);
    }
  }
}

// out[j] = <a[ia[j]], b[ib[j]]> for every j: the edge-weight gradient of the edges in a
// pattern (a: source states, b: target gradients), features in the same L2-sized chunks as
// spmm. Edges sorted by target reuse b's row from L1.
template <typename T>
void sampled_dot(int64_t nnz, int64_t features, const int64_t* ia, const int64_t* ib, const T* a, const T* b,
                 T* out, int threads) {
  typedef typename Vec<T>::type V;
  constexpr int64_t L = 64 / sizeof(T);
  const int64_t chunks = (features + CHUNK - 1) / CHUNK;
#pragma omp parallel num_threads(threads)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t f0 = c * CHUNK, end = std::min(features, f0 + CHUNK);
#pragma omp for schedule(static)
    for (int64_t j = 0; j < nnz; ++j) {
      const T* ar = a + ia[j] * features;
      const T* br = b + ib[j] * features;
      V s0 = {}, s1 = {};
      int64_t f = f0;
      for (; f + 2 * L <= end; f += 2 * L) {
        s0 += *(const V*)(ar + f) * *(const V*)(br + f);
        s1 += *(const V*)(ar + f + L) * *(const V*)(br + f + L);
      }
      s0 += s1;
      T sum = 0;
      for (int64_t i = 0; i < L; ++i) sum += s0[i];
      for (; f < end; ++f) sum += ar[f] * br[f];
      out[j] = (c == 0 ? T(0) : out[j]) + sum;
    }
  }
}

// The k largest |w| as a byte mask: exactly k ones, ties at the threshold to the lower
// index, NaN ranked below everything (magnitude -1). The k-th largest magnitude is found by
// selection (nth_element) among the magnitudes >= floor when at least k of them are, else
// among all. Returns that threshold.
template <typename T>
inline T magnitude(T v) {
  return v != v ? T(-1) : std::fabs(v);
}

template <typename T>
T topk_mask(int64_t n, int64_t k, const T* w, double floor, uint8_t* mask, int threads) {
  const bool parallel = n > (int64_t(1) << 20);  // below that, waking threads costs more than it saves
  const T f = T(floor);
  int64_t in_pool = 0;
  if (floor > 0) {
#pragma omp parallel for simd reduction(+ : in_pool) schedule(static) num_threads(threads) if (parallel)
    for (int64_t i = 0; i < n; ++i) in_pool += magnitude(w[i]) >= f;
  }
  const bool pooled = floor > 0 && in_pool >= k;  // then every one of the top k is in the pool
  const int64_t size = pooled ? in_pool : n;
  std::unique_ptr<T[]> pool(new T[size + 1]);
  if (pooled) {
    int64_t at = 0;
    for (int64_t i = 0; i < n && at < in_pool; ++i) {  // branch-free compaction
      const T m = magnitude(w[i]);
      pool[at] = m;
      at += m >= f;
    }
  } else {
    for (int64_t i = 0; i < n; ++i) pool[i] = magnitude(w[i]);
  }
  std::nth_element(pool.get(), pool.get() + (k - 1), pool.get() + size, std::greater<T>());
  const T threshold = pool[k - 1];
  int64_t above = 0;
#pragma omp parallel for simd reduction(+ : above) schedule(static) num_threads(threads) if (parallel)
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t real = magnitude(w[i]) > threshold;
    mask[i] = real;
    above += real;
  }
  int64_t room = k - above;  // ties at the threshold that still fit, lowest index first
  for (int64_t i = 0; i < n && room > 0; ++i)
    if (magnitude(w[i]) == threshold) mask[i] = 1, --room;
  return threshold;
}

// 8x8 maps (the paper's): each map row is one vector of 8 elements held in registers, the
// conv's column shifts are lane shuffles. No scratch plane, so no store-to-load stalls.
template <typename T>
struct Row {
  typedef T type __attribute__((vector_size(8 * sizeof(T)), aligned(sizeof(T))));
};

template <typename R>
inline R shift_in_left(R v) {  // out[j] = v[j-1], 0 at j = 0
  const R zero = {};
  return __builtin_shufflevector(v, zero, 8, 0, 1, 2, 3, 4, 5, 6);
}

template <typename R>
inline R shift_in_right(R v) {  // out[j] = v[j+1], 0 at j = 7
  const R zero = {};
  return __builtin_shufflevector(v, zero, 1, 2, 3, 4, 5, 6, 7, 8);
}

template <typename T, typename R>
inline T hsum(R v) {
  T s = 0;
  for (int i = 0; i < 8; ++i) s += v[i];
  return s;
}

template <typename T>
void node_forward8(int64_t nodes, int64_t batch, int64_t, int64_t, const T* x, const T* gamma, const T* beta,
                   const T* kernel, double eps, T* y, T* mean, T* rstd, int threads) {
  typedef typename Row<T>::type R;
  const R zero = {};
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
  for (int64_t v = 0; v < nodes; ++v) {
    for (int64_t s = 0; s < batch; ++s) {
      const int64_t plane = v * batch + s;
      const T* xp = x + plane * 64;
      T* yp = y + plane * 64;
      R a[10];  // activation rows with a zero row above and below
      R total = zero;
      for (int i = 0; i < 8; ++i) a[i + 1] = *(const R*)(xp + 8 * i), total += a[i + 1];
      const T m = hsum<T>(total) / T(64);
      R sq = zero;
      for (int i = 1; i <= 8; ++i) sq += (a[i] - m) * (a[i] - m);
      const T rs = T(1) / std::sqrt(hsum<T>(sq) / T(64) + T(eps));
      mean[plane] = m;
      rstd[plane] = rs;
      const T scale = gamma[v] * rs, shift = beta[v] - m * scale;
      a[0] = a[9] = zero;
      for (int i = 1; i <= 8; ++i) {
        const R pre = a[i] * scale + shift;
        a[i] = pre > zero ? pre : zero;
      }
      R left[10], right[10];
      for (int i = 0; i < 10; ++i) left[i] = shift_in_left(a[i]), right[i] = shift_in_right(a[i]);
      const T* k = kernel + v * 9;
      for (int i = 0; i < 8; ++i) {  // output row i reads activation rows i-1, i, i+1 (a[i..i+2])
        R out = k[0] * left[i] + k[1] * a[i] + k[2] * right[i];
        out += k[3] * left[i + 1] + k[4] * a[i + 1] + k[5] * right[i + 1];
        out += k[6] * left[i + 2] + k[7] * a[i + 2] + k[8] * right[i + 2];
        *(R*)(yp + 8 * i) = out;
      }
    }
  }
}

template <typename T>
void node_backward8(int64_t nodes, int64_t batch, int64_t, int64_t, const T* x, const T* gamma, const T* beta,
                    const T* kernel, const T* mean, const T* rstd, const T* gy, T* gx, T* ggamma, T* gbeta,
                    T* gkernel, int threads) {
  typedef typename Row<T>::type R;
  const R zero = {};
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t v = 0; v < nodes; ++v) {
    const T* k = kernel + v * 9;
    const T g = gamma[v], b = beta[v];
    R sum_k[9], sum_gamma = zero, sum_beta = zero;
    for (int d = 0; d < 9; ++d) sum_k[d] = zero;
    for (int64_t s = 0; s < batch; ++s) {
      const int64_t plane = v * batch + s;
      const T* xp = x + plane * 64;
      const T* gyp = gy + plane * 64;
      T* gxp = gx + plane * 64;
      const T m = mean[plane], rs = rstd[plane];
      R xhat[8], pre[8], a[10], go[10];  // a, go: activation and output gradient, zero rows around
      a[0] = a[9] = go[0] = go[9] = zero;
      for (int i = 0; i < 8; ++i) {
        xhat[i] = (*(const R*)(xp + 8 * i) - m) * rs;
        pre[i] = g * xhat[i] + b;
        a[i + 1] = pre[i] > zero ? pre[i] : zero;
        go[i + 1] = *(const R*)(gyp + 8 * i);
      }
      // kernel gradient: k[di][dj] += sum_i <go row i, activation row i+di-1 shifted by dj-1>
      for (int i = 0; i < 8; ++i) {
        const R gr = go[i + 1];
        for (int di = 0; di < 3; ++di) {
          const R ar = a[i + di];
          sum_k[3 * di] += gr * shift_in_left(ar);
          sum_k[3 * di + 1] += gr * ar;
          sum_k[3 * di + 2] += gr * shift_in_right(ar);
        }
      }
      // activation gradient = transposed conv of go; through ReLU; the norm's backward
      R gpre[8], plane_beta = zero, plane_gamma = zero;
      for (int i = 0; i < 8; ++i) {  // rows i+1, i, i-1 of go are go[i+2], go[i+1], go[i]
        R ga = k[0] * shift_in_right(go[i + 2]) + k[1] * go[i + 2] + k[2] * shift_in_left(go[i + 2]);
        ga += k[3] * shift_in_right(go[i + 1]) + k[4] * go[i + 1] + k[5] * shift_in_left(go[i + 1]);
        ga += k[6] * shift_in_right(go[i]) + k[7] * go[i] + k[8] * shift_in_left(go[i]);
        gpre[i] = pre[i] > zero ? ga : zero;
        plane_beta += gpre[i];
        plane_gamma += gpre[i] * xhat[i];
      }
      sum_beta += plane_beta;
      sum_gamma += plane_gamma;
      const T mean1 = g * hsum<T>(plane_beta) / T(64), mean2 = g * hsum<T>(plane_gamma) / T(64);
      for (int i = 0; i < 8; ++i) *(R*)(gxp + 8 * i) = rs * (g * gpre[i] - mean1 - xhat[i] * mean2);
    }
    ggamma[v] = hsum<T>(sum_gamma);
    gbeta[v] = hsum<T>(sum_beta);
    for (int d = 0; d < 9; ++d) gkernel[v * 9 + d] = hsum<T>(sum_k[d]);
  }
}

}  // namespace

extern "C" {

#define WIRING_EXPORT(T, SUFFIX)                                                                            \
  void wr_spmm_##SUFFIX(int64_t rows, int64_t features, const int64_t* rowptr, const int64_t* col,         \
                        const T* val, const T* x, T* out, int accumulate, int threads) {                  \
    spmm<T>(rows, features, rowptr, col, val, x, out, accumulate, threads);                                \
  }                                                                                                         \
  void wr_node_forward_##SUFFIX(int64_t nodes, int64_t batch, int64_t height, int64_t width, const T* x,    \
                                const T* gamma, const T* beta, const T* kernel, double eps, T* y, T* mean, \
                                T* rstd, int threads) {                                                     \
    if (height == 8 && width == 8)                                                                          \
      node_forward8<T>(nodes, batch, height, width, x, gamma, beta, kernel, eps, y, mean, rstd, threads); \
    else                                                                                                    \
      node_forward<T>(nodes, batch, height, width, x, gamma, beta, kernel, eps, y, mean, rstd, threads); \
  }                                                                                                         \
  void wr_sampled_dot_##SUFFIX(int64_t nnz, int64_t features, const int64_t* ia, const int64_t* ib, const T* a,  \
                               const T* b, T* out, int threads) {                                           \
    sampled_dot<T>(nnz, features, ia, ib, a, b, out, threads);                                             \
  }                                                                                                         \
  T wr_topk_mask_##SUFFIX(int64_t n, int64_t k, const T* w, double floor, uint8_t* mask, int threads) {     \
    return topk_mask<T>(n, k, w, floor, mask, threads);                                                    \
  }                                                                                                         \
  void wr_node_backward_##SUFFIX(int64_t nodes, int64_t batch, int64_t height, int64_t width, const T* x,   \
                                 const T* gamma, const T* beta, const T* kernel, const T* mean,             \
                                 const T* rstd, const T* gy, T* gx, T* ggamma, T* gbeta, T* gkernel,        \
                                 int threads) {                                                             \
    if (height == 8 && width == 8)                                                                          \
      node_backward8<T>(nodes, batch, height, width, x, gamma, beta, kernel, mean, rstd, gy, gx, ggamma, \
                             gbeta, gkernel, threads);                                                      \
    else                                                                                                    \
      node_backward<T>(nodes, batch, height, width, x, gamma, beta, kernel, mean, rstd, gy, gx, ggamma, \
                             gbeta, gkernel, threads);                                                      \
  }

WIRING_EXPORT(float, f32)
WIRING_EXPORT(double, f64)

int wr_abi_version() { return 1; }

}  // extern "C"
