// Portable optimized kernels for channels-first tensors (inner > 1, e.g. NCHW): plain C++ loops
// that the compiler vectorizes along inner, OpenMP across (channel, group) tasks.
//
// Moments: each leaf (kLeafValues consecutive values of a channel) is read twice while in L1:
// pass 1 sums, pass 2 sums residuals and squares about the leaf mean. Leaves are merged left to
// right inside a group, groups in a fixed tree (chunking.hpp). Accumulation is in double.
#include <algorithm>

#include "plain/mutants.hpp"
#include "plain/plain.hpp"
#include "scratch.hpp"

namespace bnorm::kernels::plain {
namespace {

// Calls f(pointer, length) for each contiguous run of channel c's logical values [begin, end).
template <class T, class F>
void for_each_run(T* x, const Geometry& g, std::int64_t c, std::int64_t begin, std::int64_t end,
                  F&& f) {
  std::int64_t o = begin / g.inner;
  std::int64_t i = begin % g.inner;
  while (begin < end) {
    const std::int64_t length = std::min(g.inner - i, end - begin);
    f(x + (o * g.channels + c) * g.inner + i, length);
    begin += length;
    ++o;
    i = 0;
  }
}

template <class T>
Partial leaf(const T* x, const Geometry& g, std::int64_t c, std::int64_t begin, std::int64_t end) {
  const double n = static_cast<double>(end - begin);
  if (mutant(Mutant::kOnePass)) {  // TRIPWIRE (mutants.hpp): sum x^2 - (sum x)^2 / n
    double s = 0;
    double s2 = 0;
    for_each_run(x, g, c, begin, end, [&](const T* p, std::int64_t len) {
      for (std::int64_t k = 0; k < len; ++k) {
        s += static_cast<double>(p[k]);
        s2 += static_cast<double>(p[k]) * static_cast<double>(p[k]);
      }
    });
    return Partial{n, s / n, 0, std::max(0.0, s2 - s * s / n)};
  }
  double sum = 0;
  for_each_run(x, g, c, begin, end, [&](const T* p, std::int64_t len) {
    for (std::int64_t k = 0; k < len; ++k) sum += static_cast<double>(p[k]);
  });
  const double mean = sum / n;
  double residual_sum = 0;
  double square_sum = 0;
  for_each_run(x, g, c, begin, end, [&](const T* p, std::int64_t len) {
    for (std::int64_t k = 0; k < len; ++k) {
      const double r = static_cast<double>(p[k]) - mean;
      residual_sum += r;
      square_sum += r * r;
    }
  });
  return leaf_moments(n, mean, residual_sum, square_sum);
}

}  // namespace

bool channels_first_applies(const Geometry& g) {
  return g.inner > 1;
}

template <class T>
void channels_first_moments(const T* x, const Geometry& g, Moments* moments) {
  const std::int64_t count = g.count_per_channel();
  const ChunkPlan plan = plan_chunks_tripwired(count, kLeafValues);
  if (plan.groups == 0) {
    std::fill(moments, moments + g.channels, Moments{});
    return;
  }
  // partials[c * groups + group]
  const auto partials = scratch<Partial>(ScratchSlot::kPartials, g.channels * plan.groups);
  const std::int64_t tasks = g.channels * plan.groups;
#pragma omp parallel for schedule(static) if (g.size() >= kParallelMinValues)
  for (std::int64_t t = 0; t < tasks; ++t) {
    const std::int64_t c = t / plan.groups;
    const std::int64_t group = t % plan.groups;
    const std::int64_t first = group * plan.leaves_per_group;
    const std::int64_t last = std::min(plan.leaves, first + plan.leaves_per_group);
    Partial acc;
    if (mutant(Mutant::kDataRace)) ++mutant_race_counter;  // TRIPWIRE (mutants.hpp): a race
    for (std::int64_t l = first; l < last; ++l) {
      const std::int64_t begin = l * plan.leaf;
      acc = merge_chunks_tripwired(
          acc, leaf(x, g, c, begin, leaf_end_tripwired(begin, plan.leaf, count)));
    }
    partials[t] = acc;
  }
  for (std::int64_t c = 0; c < g.channels; ++c) {
    tree_merge_tripwired(&partials[c * plan.groups], plan.groups, 1);
    moments[c] = to_moments(partials[c * plan.groups]);
  }
}

template <class T>
void channels_first_normalize(const T* x, T* y, const Geometry& g,
                              const NormalizeCoefficients<T>& k, const Epilogue<T>& e) {
  const std::int64_t rows = g.outer * g.channels;
#pragma omp parallel for schedule(static) if (g.size() >= kParallelMinValues)
  for (std::int64_t row = 0; row < rows; ++row) {
    const std::int64_t c = row % g.channels;
    const T mean_hi = k.mean_hi[c];
    const T mean_lo = k.mean_lo[c];
    const T a = k.a[c];
    const T b = k.b[c];
    const T* in = x + row * g.inner;
    T* out = y + row * g.inner;
    for (std::int64_t i = 0; i < g.inner; ++i) {
      out[i] = with_epilogue(((in[i] - mean_hi) - mean_lo) * a + b, e, row * g.inner + i);
    }
  }
}

template <class T>
void channels_first_backward_sums(const T* x, const T* dy, const Geometry& g, const T* mean,
                                  double* sum_dy, double* sum_dy_xc) {
  const std::int64_t count = g.count_per_channel();
  const ChunkPlan plan = plan_chunks_tripwired(count, kLeafValues);
  if (plan.groups == 0) {
    std::fill(sum_dy, sum_dy + g.channels, 0.0);
    std::fill(sum_dy_xc, sum_dy_xc + g.channels, 0.0);
    return;
  }
  const std::int64_t tasks = g.channels * plan.groups;
  const auto partial_dy = scratch<double>(ScratchSlot::kPartials, tasks);
  const auto partial_dy_xc = scratch<double>(ScratchSlot::kPartials2, tasks);
#pragma omp parallel for schedule(static) if (g.size() >= kParallelMinValues)
  for (std::int64_t t = 0; t < tasks; ++t) {
    const std::int64_t c = t / plan.groups;
    const std::int64_t group = t % plan.groups;
    const std::int64_t begin = group * plan.leaves_per_group * plan.leaf;
    const std::int64_t end = std::min(count, begin + plan.leaves_per_group * plan.leaf);
    const std::ptrdiff_t offset = dy - x;  // dy walks the same runs as x
    const double m = static_cast<double>(mean[c]);
    double s = 0;
    double sx = 0;
    for_each_run(x, g, c, begin, end, [&](const T* p, std::int64_t n) {
      const T* d = p + offset;
      for (std::int64_t i = 0; i < n; ++i) {
        const double dd = static_cast<double>(d[i]);
        s += dd;
        sx += dd * (static_cast<double>(p[i]) - m);
      }
    });
    partial_dy[t] = s;
    partial_dy_xc[t] = sx;
  }
  for (std::int64_t c = 0; c < g.channels; ++c) {
    tree_sum(&partial_dy[c * plan.groups], plan.groups, 1);
    tree_sum(&partial_dy_xc[c * plan.groups], plan.groups, 1);
    sum_dy[c] = partial_dy[c * plan.groups];
    sum_dy_xc[c] = partial_dy_xc[c * plan.groups];
  }
}

template <class T>
void channels_first_backward_input(const T* x, const T* dy, T* dx, const Geometry& g,
                                   const BackwardCoefficients<T>& k) {
  const std::int64_t rows = g.outer * g.channels;
#pragma omp parallel for schedule(static) if (g.size() >= kParallelMinValues)
  for (std::int64_t row = 0; row < rows; ++row) {
    const std::int64_t c = row % g.channels;
    const T mean = k.mean_w[c];
    const T k_dy = k.k_dy_w[c];
    const T k_xc = k.k_xc_w[c];
    const T k_0 = k.k_0_w[c];
    const std::int64_t at = row * g.inner;
    for (std::int64_t i = 0; i < g.inner; ++i) {
      dx[at + i] = k_dy * dy[at + i] + k_xc * (x[at + i] - mean) + k_0;
    }
  }
}

#define BNORM_INSTANTIATE(T)                                                                      \
  template void channels_first_moments<T>(const T*, const Geometry&, Moments*);                   \
  template void channels_first_normalize<T>(const T*, T*, const Geometry&,                        \
                                            const NormalizeCoefficients<T>&, const Epilogue<T>&); \
  template void channels_first_backward_sums<T>(const T*, const T*, const Geometry&, const T*,    \
                                                double*, double*);                                \
  template void channels_first_backward_input<T>(const T*, const T*, T*, const Geometry&,         \
                                                 const BackwardCoefficients<T>&);
BNORM_INSTANTIATE(float)
BNORM_INSTANTIATE(double)
#undef BNORM_INSTANTIATE

}  // namespace bnorm::kernels::plain
