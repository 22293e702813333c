// Bilinear gather of a deformable 3x3 conv's taps on CPU, channels-last, for iou_aware's "fused"
// deformable conv (iou_aware/modeling/deformable.py): the 9 taps of every output location land in
// one row of a (N * H * W, 9 * C) matrix, so that one 1x1 conv (a GEMM) with the (Cout, 9 * C)
// weight applies the deformable conv. A tap of a channels-last map is one contiguous run of C values
// per corner, which is what makes this faster than F.grid_sample's per-channel gather of NCHW maps.
//
// Sampling convention (that of F.grid_sample with align_corners=False and zero padding, and of
// torchvision.ops.deform_conv2d): a position (y, x) in index units reads the 4 integer corners
// around it with bilinear weights; corners outside the map read zero, and a position outside
// (-1, h) x (-1, w) (or not finite) reads zero with zero gradient.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

// The 4 corners of one sample, in the order (y0, x0), (y0, x1), (y1, x0), (y1, x1): the offset of
// each corner's run of channels in the channels-last image (-1 outside the map) and its bilinear
// weight times the modulation.
template <typename scalar_t>
struct Corners {
  int64_t offset[4];
  scalar_t weight[4];
  scalar_t ly, lx;  // fractional parts of y and x
};

template <typename scalar_t>
inline Corners<scalar_t> find_corners(scalar_t y, scalar_t x, scalar_t modulation, int64_t h, int64_t w,
                                      int64_t channels) {
  Corners<scalar_t> c;
  if (!(y > -1 && y < h && x > -1 && x < w)) {
    for (int i = 0; i < 4; ++i) {
      c.offset[i] = -1;
      c.weight[i] = 0;
    }
    c.ly = c.lx = 0;
    return c;
  }
  const scalar_t fy = std::floor(y), fx = std::floor(x);
  c.ly = y - fy;
  c.lx = x - fx;
  const int64_t y0 = static_cast<int64_t>(fy), x0 = static_cast<int64_t>(fx);
  const scalar_t wy[2] = {1 - c.ly, c.ly}, wx[2] = {1 - c.lx, c.lx};
  for (int i = 0; i < 4; ++i) {
    const int64_t yy = y0 + i / 2, xx = x0 + i % 2;
    const bool inside = yy >= 0 && yy < h && xx >= 0 && xx < w;
    c.offset[i] = inside ? (yy * w + xx) * channels : -1;
    c.weight[i] = inside ? modulation * wy[i / 2] * wx[i % 2] : scalar_t(0);
  }
  return c;
}

// The channel loops, compiled for AVX-512, AVX2 and plain x86-64 and picked at load time: the
// package is built on the machine that runs it, but a build may be copied elsewhere.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define IOU_AWARE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define IOU_AWARE_CLONES
#endif

// dst = sum_i w[i] * src[i], over n values.
#define DEFINE_BLEND(T)                                                                                    \
  IOU_AWARE_CLONES void blend4(T* __restrict__ dst, const T* __restrict__ a, const T* __restrict__ b,      \
                               const T* __restrict__ c, const T* __restrict__ d, const T* w, int64_t n) { \
    const T wa = w[0], wb = w[1], wc = w[2], wd = w[3];                                                     \
    _Pragma("omp simd") for (int64_t i = 0; i < n; ++i) dst[i] = wa * a[i] + wb * b[i] + wc * c[i] + wd * d[i]; \
  }
DEFINE_BLEND(float)
DEFINE_BLEND(double)

// dot[i] = sum_j g[j] * src_i[j].
#define DEFINE_DOT4(T)                                                                                     \
  IOU_AWARE_CLONES void dot4(const T* __restrict__ g, const T* __restrict__ a, const T* __restrict__ b,    \
                             const T* __restrict__ c, const T* __restrict__ d, T* dot, int64_t n) {       \
    T s0 = 0, s1 = 0, s2 = 0, s3 = 0;                                                                       \
    _Pragma("omp simd reduction(+ : s0, s1, s2, s3)") for (int64_t i = 0; i < n; ++i) {                     \
      s0 += g[i] * a[i];                                                                                    \
      s1 += g[i] * b[i];                                                                                    \
      s2 += g[i] * c[i];                                                                                    \
      s3 += g[i] * d[i];                                                                                    \
    }                                                                                                       \
    dot[0] = s0;                                                                                            \
    dot[1] = s1;                                                                                            \
    dot[2] = s2;                                                                                            \
    dot[3] = s3;                                                                                            \
  }
DEFINE_DOT4(float)
DEFINE_DOT4(double)

// dst += w * src, over n values.
#define DEFINE_AXPY(T)                                                                          \
  IOU_AWARE_CLONES void axpy(T* __restrict__ dst, const T* __restrict__ src, T w, int64_t n) { \
    _Pragma("omp simd") for (int64_t i = 0; i < n; ++i) dst[i] += w * src[i];                  \
  }
DEFINE_AXPY(float)
DEFINE_AXPY(double)

struct Shapes {
  int64_t n, h, w, channels, hw;
};

Shapes check_inputs(const at::Tensor& feature, const at::Tensor& positions, const c10::optional<at::Tensor>& mask) {
  TORCH_CHECK(feature.device().is_cpu() && positions.device().is_cpu(), "deform_gather: CPU tensors only, got ",
              feature.device(), " and ", positions.device());
  TORCH_CHECK(feature.dim() == 4 && feature.is_contiguous(),
              "deform_gather: feature must be a contiguous (N, h, w, C) channels-last map, got ", feature.sizes());
  TORCH_CHECK(positions.dim() == 5 && positions.size(1) == 9 && positions.size(2) == 2 && positions.is_contiguous(),
              "deform_gather: positions must be contiguous (N, 9, 2, H, W), got ", positions.sizes());
  TORCH_CHECK(positions.size(0) == feature.size(0), "deform_gather: batch sizes differ, ", feature.size(0), " and ",
              positions.size(0));
  TORCH_CHECK(positions.scalar_type() == feature.scalar_type(), "deform_gather: dtypes differ, ",
              feature.scalar_type(), " and ", positions.scalar_type());
  if (mask.has_value()) {
    const auto& m = mask.value();
    TORCH_CHECK(m.dim() == 4 && m.size(0) == positions.size(0) && m.size(1) == 9 && m.size(2) == positions.size(3) &&
                    m.size(3) == positions.size(4) && m.is_contiguous(),
                "deform_gather: mask must be contiguous (N, 9, H, W), got ", m.sizes());
    TORCH_CHECK(m.scalar_type() == feature.scalar_type(), "deform_gather: mask dtype differs");
  }
  return {feature.size(0), feature.size(1), feature.size(2), feature.size(3), positions.size(3) * positions.size(4)};
}

// Calls visit(row, k, sample, y_index, modulation, corners, image) for every sample: tap k of
// output row ``row`` (the row of the taps matrix), ``sample`` its index in the (N, 9, H, W) mask,
// ``y_index`` that of its y in the (N, 9, 2, H, W) positions (x follows H * W later), ``image``
// its image's channels-last features. Rows are split over the threads.
template <typename scalar_t, typename Visit>
void for_each_sample(const Shapes& s, const scalar_t* feat, const scalar_t* pos, const scalar_t* mod, Visit visit) {
  at::parallel_for(0, s.n * s.hw, 16, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / s.hw, p = row % s.hw;
      const scalar_t* image = feat + b * s.h * s.w * s.channels;
      for (int64_t k = 0; k < 9; ++k) {
        const int64_t sample = (b * 9 + k) * s.hw + p;
        const int64_t y_index = ((b * 9 + k) * 2) * s.hw + p;
        const scalar_t m = mod != nullptr ? mod[sample] : scalar_t(1);
        const auto c = find_corners<scalar_t>(pos[y_index], pos[y_index + s.hw], m, s.h, s.w, s.channels);
        visit(row, k, sample, y_index, m, c, image);
      }
    }
  });
}

}  // namespace

// feature: (N, h, w, C) contiguous; positions: (N, 9, 2, H, W), the (y, x) of tap k at output (i, j)
// in index units of feature; mask: (N, 9, H, W) or None; out: a contiguous (N * H * W, 9 * C)
// tensor to write into, or None. Returns the taps (N * H * W, 9 * C): row (b * H + i) * W + j,
// column k * C + c.
at::Tensor deform_gather_forward(const at::Tensor& feature, const at::Tensor& positions,
                                 const c10::optional<at::Tensor>& mask, const c10::optional<at::Tensor>& out) {
  const Shapes s = check_inputs(feature, positions, mask);
  const bool has_mask = mask.has_value();
  at::Tensor taps;
  if (out.has_value()) {
    taps = out.value();
    TORCH_CHECK(taps.is_contiguous() && taps.dim() == 2 && taps.size(0) == s.n * s.hw &&
                    taps.size(1) == 9 * s.channels && taps.scalar_type() == feature.scalar_type() &&
                    taps.device().is_cpu(),
                "deform_gather: out must be a contiguous CPU (N * H * W, 9 * C) tensor of the feature's dtype, got ",
                taps.sizes());
  } else {
    taps = at::empty({s.n * s.hw, 9 * s.channels}, feature.options());
  }
  AT_DISPATCH_FLOATING_TYPES(feature.scalar_type(), "deform_gather_forward", [&] {
    const std::vector<scalar_t> zeros(s.channels, scalar_t(0));  // what a corner outside the map reads
    const scalar_t* feat = feature.data_ptr<scalar_t>();
    const scalar_t* pos = positions.data_ptr<scalar_t>();
    const scalar_t* mod = has_mask ? mask.value().data_ptr<scalar_t>() : nullptr;
    scalar_t* dst = taps.data_ptr<scalar_t>();
    for_each_sample<scalar_t>(s, feat, pos, mod, [&](int64_t row, int64_t k, int64_t, int64_t, scalar_t,
                                                     const Corners<scalar_t>& c, const scalar_t* image) {
      const scalar_t* src[4];
      for (int i = 0; i < 4; ++i) src[i] = c.offset[i] < 0 ? zeros.data() : image + c.offset[i];
      blend4(dst + (row * 9 + k) * s.channels, src[0], src[1], src[2], src[3], c.weight, s.channels);
    });
  });
  return taps;
}

// The gradients of deform_gather_forward given grad_taps (N * H * W, 9 * C): returns
// [grad_feature (N, h, w, C), grad_positions (N, 9, 2, H, W), grad_mask (N, 9, H, W) or undefined].
std::vector<at::Tensor> deform_gather_backward(const at::Tensor& grad_taps, const at::Tensor& feature,
                                               const at::Tensor& positions, const c10::optional<at::Tensor>& mask) {
  const Shapes s = check_inputs(feature, positions, mask);
  TORCH_CHECK(grad_taps.is_contiguous() && grad_taps.dim() == 2 && grad_taps.size(0) == s.n * s.hw &&
                  grad_taps.size(1) == 9 * s.channels && grad_taps.scalar_type() == feature.scalar_type(),
              "deform_gather: grad_taps must be contiguous (N * H * W, 9 * C) of the feature's dtype, got ",
              grad_taps.sizes(), " ", grad_taps.scalar_type());
  const bool has_mask = mask.has_value();
  auto grad_feature = at::zeros_like(feature);
  auto grad_positions = at::empty_like(positions);
  auto grad_mask = has_mask ? at::empty_like(mask.value()) : at::Tensor();
  // Every sample's corners, found in the first pass and reused by the scatter.
  auto corner_offset = at::empty({s.n * 9 * s.hw, 4}, feature.options().dtype(at::kLong));
  auto corner_weight = at::empty({s.n * 9 * s.hw, 4}, feature.options());
  AT_DISPATCH_FLOATING_TYPES(feature.scalar_type(), "deform_gather_backward", [&] {
    const std::vector<scalar_t> zeros(s.channels, scalar_t(0));
    const scalar_t* grad = grad_taps.data_ptr<scalar_t>();
    const scalar_t* feat = feature.data_ptr<scalar_t>();
    const scalar_t* pos = positions.data_ptr<scalar_t>();
    const scalar_t* mod = has_mask ? mask.value().data_ptr<scalar_t>() : nullptr;
    scalar_t* gpos = grad_positions.data_ptr<scalar_t>();
    scalar_t* gmod = has_mask ? grad_mask.data_ptr<scalar_t>() : nullptr;
    int64_t* offsets = corner_offset.data_ptr<int64_t>();
    scalar_t* weights = corner_weight.data_ptr<scalar_t>();
    // Pass 1, per sample: the dot products of its gradient with its 4 corners' features give the
    // gradients of its position and of its modulation.
    for_each_sample<scalar_t>(s, feat, pos, mod, [&](int64_t row, int64_t k, int64_t sample, int64_t y_index,
                                                     scalar_t m, const Corners<scalar_t>& c, const scalar_t* image) {
      const scalar_t* src[4];
      for (int i = 0; i < 4; ++i) {
        src[i] = c.offset[i] < 0 ? zeros.data() : image + c.offset[i];
        offsets[sample * 4 + i] = c.offset[i];
        weights[sample * 4 + i] = c.weight[i];
      }
      scalar_t dot[4];
      dot4(grad + (row * 9 + k) * s.channels, src[0], src[1], src[2], src[3], dot, s.channels);
      const scalar_t ly = c.ly, lx = c.lx, hy = 1 - ly, hx = 1 - lx;
      gpos[y_index] = m * (hx * (dot[2] - dot[0]) + lx * (dot[3] - dot[1]));
      gpos[y_index + s.hw] = m * (hy * (dot[1] - dot[0]) + ly * (dot[3] - dot[2]));
      if (gmod != nullptr) gmod[sample] = hy * hx * dot[0] + hy * lx * dot[1] + ly * hx * dot[2] + ly * lx * dot[3];
    });
    // Pass 2: scatter into the features. A task owns one image and one block of channels, so no
    // two tasks write the same value.
    scalar_t* gfeat = grad_feature.data_ptr<scalar_t>();
    const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
    const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>((threads + s.n - 1) / s.n, s.channels / 16));
    const int64_t block = (s.channels + blocks - 1) / blocks;
    at::parallel_for(0, s.n * blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / blocks, c0 = (task % blocks) * block;
        const int64_t width = std::min(s.channels, c0 + block) - c0;
        if (width <= 0) continue;
        scalar_t* image_grad = gfeat + b * s.h * s.w * s.channels + c0;
        for (int64_t p = 0; p < s.hw; ++p) {
          for (int64_t k = 0; k < 9; ++k) {
            const int64_t sample = (b * 9 + k) * s.hw + p;
            const scalar_t* g = grad + ((b * s.hw + p) * 9 + k) * s.channels + c0;
            for (int i = 0; i < 4; ++i) {
              const int64_t offset = offsets[sample * 4 + i];
              if (offset >= 0) axpy(image_grad + offset, g, weights[sample * 4 + i], width);
            }
          }
        }
      }
    });
  });
  return {grad_feature, grad_positions, grad_mask};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  // Bumped whenever a signature below changes: iou_aware.modeling.deformable ignores a stale build.
  m.attr("INTERFACE_VERSION") = 1;
  m.def("deform_gather_forward", &deform_gather_forward, "Bilinear taps of a deformable 3x3 conv, channels-last, "
        "as a (N * H * W, 9 * C) matrix (CPU)", py::arg("feature"), py::arg("positions"), py::arg("mask"),
        py::arg("out") = py::none());
  m.def("deform_gather_backward", &deform_gather_backward,
        "Gradients of deform_gather_forward: [feature, positions, mask] (CPU)", py::arg("grad_taps"),
        py::arg("feature"), py::arg("positions"), py::arg("mask"));
}
