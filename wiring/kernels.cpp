// Native CPU kernels of the wiring engine (optional; see wiring/native.py).
//
// Plain C++ with a C ABI and OpenMP, no PyTorch headers: wiring.native compiles this
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
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr int64_t CHUNK = 512;  // features per block: 2 KB of float output stays in L1

template <typename T>
void spmm(int64_t rows, int64_t features, const int64_t* rowptr, const int64_t* col, const T* val,
          const T* x, T* out, int accumulate, int threads) {
  const int64_t chunks = (features + CHUNK - 1) / CHUNK;
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
  for (int64_t c = 0; c < chunks; ++c) {
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t f0 = c * CHUNK;
      const int64_t len = std::min(CHUNK, features - f0);
      T* o = out + r * features + f0;
      if (!accumulate) {
        for (int64_t i = 0; i < len; ++i) o[i] = T(0);
      }
      for (int64_t j = rowptr[r]; j < rowptr[r + 1]; ++j) {
        const T w = val[j];
        const T* xr = x + col[j] * features + f0;
#pragma omp simd
        for (int64_t i = 0; i < len; ++i) o[i] += w * xr[i];
      }
    }
  }
}

// FH, FW > 0: the map size fixed at compile time (8x8, the paper's), so loops unroll into
// vector instructions; 0: taken from the arguments.
template <typename T, int FH, int FW>
void node_forward(int64_t nodes, int64_t batch, int64_t height_, int64_t width_, const T* x, const T* gamma,
                  const T* beta, const T* kernel, double eps, T* y, T* mean, T* rstd, int threads) {
  const int64_t height = FH ? FH : height_, width = FW ? FW : width_;
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

template <typename T, int FH, int FW>
void node_backward(int64_t nodes, int64_t batch, int64_t height_, int64_t width_, const T* x, const T* gamma,
                   const T* beta, const T* kernel, const T* mean, const T* rstd, const T* gy, T* gx,
                   T* ggamma, T* gbeta, T* gkernel, int threads) {
  const int64_t height = FH ? FH : height_, width = FW ? FW : width_;
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
      node_forward<T, 8, 8>(nodes, batch, height, width, x, gamma, beta, kernel, eps, y, mean, rstd, threads); \
    else                                                                                                    \
      node_forward<T, 0, 0>(nodes, batch, height, width, x, gamma, beta, kernel, eps, y, mean, rstd, threads); \
  }                                                                                                         \
  void wr_node_backward_##SUFFIX(int64_t nodes, int64_t batch, int64_t height, int64_t width, const T* x,   \
                                 const T* gamma, const T* beta, const T* kernel, const T* mean,             \
                                 const T* rstd, const T* gy, T* gx, T* ggamma, T* gbeta, T* gkernel,        \
                                 int threads) {                                                             \
    if (height == 8 && width == 8)                                                                          \
      node_backward<T, 8, 8>(nodes, batch, height, width, x, gamma, beta, kernel, mean, rstd, gy, gx, ggamma, \
                             gbeta, gkernel, threads);                                                      \
    else                                                                                                    \
      node_backward<T, 0, 0>(nodes, batch, height, width, x, gamma, beta, kernel, mean, rstd, gy, gx, ggamma, \
                             gbeta, gkernel, threads);                                                      \
  }

WIRING_EXPORT(float, f32)
WIRING_EXPORT(double, f64)

int wr_abi_version() { return 1; }

}  // extern "C"
