// The per-channel scale of a normalization, gamma / sqrt(variance + epsilon), in vectors.
//
// plan_normalize (coefficients.hpp) needs it for every channel of every call; one at a
// time, the square root and the division cost a tiny call (64x100) as much as normalizing it.
// Square roots and divisions are correctly rounded in vectors as in scalars, so the values are
// bitwise those of scale_of (coefficients.hpp), which the fused channels-first paths use.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/simd/scales.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// Highway must come after foreach_target.h.
#include <hwy/highway.h>

#include <cstddef>

#include "kernels/simd/dispatch.hpp"
#include "kernels/simd/simd-inl.h"
#include "kernels/simd/simd.hpp"

HWY_BEFORE_NAMESPACE();
namespace bnorm::kernels::simd::HWY_NAMESPACE {
namespace {

// scale[c] = gamma[c] * invstd_of(variance[c], epsilon), gamma null meaning 1.
template <class T>
void ScalesT(const double* variance, const T* gamma, double epsilon, double* scale, size_t C) {
  const DD dd;
  const size_t N = hn::Lanes(dd);
  const VD eps = hn::Set(dd, epsilon);
  const VD one = hn::Set(dd, 1.0);
  const VD zero = hn::Zero(dd);
  const auto scale_of = [&](VD v, VD g) {
    const VD sum = hn::Add(v, eps);
    // invstd_of: 0 where variance + epsilon == 0 (a constant channel with epsilon 0).
    const VD invstd = hn::IfThenZeroElse(hn::Eq(sum, zero), hn::Div(one, hn::Sqrt(sum)));
    return hn::Mul(g, invstd);
  };
  size_t c = 0;
  for (; c + N <= C; c += N) {
    const VD g = gamma == nullptr ? one : LoadWide(gamma + c);
    hn::StoreU(scale_of(hn::LoadU(dd, variance + c), g), dd, scale + c);
  }
  if (c < C) {
    const size_t n = C - c;
    const VD g = gamma == nullptr ? one : LoadWideTail(gamma + c, n);
    // Lanes past C compute from variance 0 + epsilon; they are not stored.
    StoreTail(scale_of(LoadTail(dd, variance + c, n), g), dd, scale + c, n);
  }
}

}  // namespace

// Non-template entry points, one per storage type (dispatch.hpp), for HWY_EXPORT.
#define BNORM_SCALES_ENTRY_POINT(T, S, unused)                                          \
  void Scales##S(const double* variance, const T* gamma, double epsilon, double* scale, \
                 size_t C) {                                                            \
    ScalesT(variance, gamma, epsilon, scale, C);                                        \
  }
BNORM_SIMD_STORAGE_TYPES(BNORM_SCALES_ENTRY_POINT, )
#undef BNORM_SCALES_ENTRY_POINT

}  // namespace bnorm::kernels::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace bnorm::kernels::simd {

BNORM_SIMD_EXPORT(Scales)

template <class T>
void scales(const double* variance, const T* gamma, double epsilon, double* scale,
            std::size_t channels) {
  Scales<T>()(variance, gamma, epsilon, scale, channels);
}

template void scales<float>(const double*, const float*, double, double*, std::size_t);
template void scales<double>(const double*, const double*, double, double*, std::size_t);

}  // namespace bnorm::kernels::simd
#endif  // HWY_ONCE
