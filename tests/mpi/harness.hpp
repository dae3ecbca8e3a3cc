// The MPI test harness: "N ranks == one process holding the concatenated batch".
//
// A *step* is anything that runs batch norm on a batch and returns named outputs: the
// functional API (functional_test.cpp), the phases (phases_test.cpp), or a layer. The harness
// runs a step twice on this rank's slice of a global batch with the communicator, and once on
// the whole batch without it (every rank computes that single-process reference itself), then
// proves, on every rank:
//   - per-sample outputs (y, dx: shape [n_r, ...]) equal this rank's slice of the reference, and
//     per-channel outputs (statistics, dgamma, dbeta, moving statistics) the whole reference,
//     within kMaxUlps; outputs marked `exact` bitwise when the data is exactly representable;
//   - per-channel outputs are bitwise identical on every rank (all-gathered and compared);
//   - a rerun gives bitwise identical outputs;
//   - no output holds NaN (all-empty batches included), and reference outputs are not
//     degenerate (at most 30% exact zeros in a non-empty per-sample output).
// The batch axis is the outer dimension: rank r holds samples [sum of n_<r, + n_r), a contiguous
// slice of the global tensor.
//
// Adding a case (e.g. the BatchNorm layer with synchronized = true): a new tests/mpi/*_test.cpp
// (picked up by CMakeLists.txt) with a step and a loop, as functional_test.cpp does:
//   template <class T> Outputs<T> layer_step(const Batch<T>& b, const Communicator* comm) {
//     // a fresh layer, synchronized over *comm when comm != nullptr; train on b.x, backward b.dy
//     const ErrorScales s = error_scales<T>(b, batch_mean, batch_variance, epsilon);
//     return {{{"y", y, false, s.y}, {"dx", dx, false, s.dx}},
//             {{"moving_mean", moving_mean, true, s.mean},
//              {"moving_variance", moving_variance, true, s.variance},  // x M/(M-1) if unbiased
//              {"dgamma", dgamma, false, s.dgamma}, {"dbeta", dbeta, false, s.dbeta}}};
//   }
//   for (const Problem& p : problems()) for (const Split& split : splits(world().size()))
//     expect_matches_single_process<T>(layer_step<T>, p, split, Data::kRandom, world());
// Every rank must make the same collective calls: use EXPECT_*, not ASSERT_*, around them.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <bnorm/bnorm.hpp>
#include <bnorm/mpi.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace bnorm_mpi_test {

using bnorm::Communicator;
using bnorm::Geometry;

// The communicator over every rank of the test (set up by main.cpp).
const bnorm::MpiCommunicator& world();

inline constexpr std::int64_t kMaxUlps = 4;

// A tensor layout: the shape of one sample (the global shape without its batch dimension) and
// the channel axis of the full shape (1 = NCHW-like, -1 = channels last, ...).
struct Problem {
  std::string name;
  std::vector<std::int64_t> sample_shape;
  int axis = 1;
};

// How the global batch is split over ranks: samples per rank, in rank order.
using Split = std::vector<std::int64_t>;

enum class Data {
  kRandom,  // uniform values about a per-channel centre: statistics compared within kMaxUlps
  kExact,   // per rank and channel, small integers in pairs symmetric about the centre: every
            // partial mean is the centre and every M2 an exact integer, so statistics are exact
};

// The input of a step: this rank's (or the whole) batch and the parameters.
template <class T>
struct Batch {
  std::vector<std::int64_t> shape;  // the full shape, batch dimension first
  int axis = 1;
  std::span<const T> x, dy, gamma, beta;
  [[nodiscard]] Geometry geometry() const { return bnorm::geometry_of(shape, axis); }
};

template <class T>
struct Named {
  std::string name;
  std::vector<T> values;
  bool exact = false;  // bitwise against the single process when Data::kExact
  // Optional, one per value: the magnitude of the terms the value is computed from. A value that
  // cancels to near 0 is compared in ulps of this scale rather than of itself (error_scales).
  std::vector<double> scale = {};
};

template <class T>
struct Outputs {
  std::vector<Named<T>> per_sample;   // shape of x: compared to this rank's slice
  std::vector<Named<T>> per_channel;  // whole: compared entirely, and across ranks
};

// comm == nullptr: the single-process (unsynchronized) path on the whole batch.
template <class T>
using Step = std::function<Outputs<T>(const Batch<T>& batch, const Communicator* comm)>;

// ---- numbers ----

// Distance in units in the last place between two finite values of T (0 for equal values,
// +0 and -0 included); the maximum for NaN.
template <class T>
std::int64_t ulp_distance(T a, T b) {
  if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<std::int64_t>::max();
  if (a == b) return 0;
  using Bits = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;
  const auto ordered = [](T v) {
    Bits bits;
    std::memcpy(&bits, &v, sizeof v);
    // Map sign-magnitude to a monotonic integer line.
    return bits < 0 ? static_cast<std::int64_t>(std::numeric_limits<Bits>::min()) - bits
                    : static_cast<std::int64_t>(bits);
  };
  const std::int64_t d = ordered(a) - ordered(b);
  return d < 0 ? -d : d;
}

template <class T>
bool same_bits(T a, T b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

// Deterministic pseudo-random uniform in [-1, 1) from an index (splitmix64): identical on every
// rank, so each rank can rebuild the global batch.
inline double uniform(std::uint64_t index, std::uint64_t seed) {
  std::uint64_t z = index * 0x9E3779B97F4A7C15ull + seed;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-52 - 1.0;
}

// ---- the global batch and its slices ----

inline std::vector<std::int64_t> full_shape(const Problem& p, std::int64_t samples) {
  std::vector<std::int64_t> shape{samples};
  shape.insert(shape.end(), p.sample_shape.begin(), p.sample_shape.end());
  return shape;
}

inline std::int64_t values_per_sample(const Problem& p) {
  std::int64_t n = 1;
  for (const std::int64_t d : p.sample_shape) n *= d;
  return n;
}

inline std::int64_t total(const Split& split) {
  std::int64_t n = 0;
  for (const std::int64_t s : split) n += s;
  return n;
}

inline std::int64_t first_sample(const Split& split, int rank) {
  std::int64_t n = 0;
  for (int r = 0; r < rank; ++r) n += split[static_cast<std::size_t>(r)];
  return n;
}

// The per-channel centre of the data: far from 0 relative to the spread, so that a
// cancellation-prone variance would fail.
inline double centre_of(std::int64_t c) {
  return 64.0 + 0.25 * static_cast<double>(c);
}

// Exact data: the j-th of m values of one channel on one rank is centre + k_j, where values j and
// m-1-j carry +s and -s (s in 1..5) and the middle one of an odd m carries 0.
inline double exact_offset(std::int64_t j, std::int64_t m) {
  if (2 * j + 1 == m) return 0;
  const std::int64_t low = j < m - 1 - j ? j : m - 1 - j;
  const double s = static_cast<double>(low % 5 + 1);
  return j == low ? s : -s;
}

// The global x and dy of a problem split over ranks. Random data depends only on the global
// element index; exact data is symmetric within each rank's slice of each channel.
template <class T>
struct GlobalBatch {
  std::vector<std::int64_t> shape;
  std::vector<T> x, dy, gamma, beta;
};

template <class T>
GlobalBatch<T> make_global_batch(const Problem& p, const Split& split, Data data) {
  GlobalBatch<T> b;
  b.shape = full_shape(p, total(split));
  const Geometry g = bnorm::geometry_of(b.shape, p.axis);
  b.x.resize(static_cast<std::size_t>(g.size()));
  b.dy.resize(b.x.size());
  for (std::size_t e = 0; e < b.x.size(); ++e) {
    const auto c = static_cast<std::int64_t>(e) / g.inner % g.channels;
    b.x[e] = static_cast<T>(centre_of(c) + 3.0 * uniform(e, 1));
    b.dy[e] = static_cast<T>(uniform(e, 2) + 0.25);
  }
  if (data == Data::kExact) {
    // Walk each rank's slice in its own logical order (o-major, i-minor per channel).
    const std::int64_t per_sample = values_per_sample(p);
    for (std::size_t r = 0; r < split.size(); ++r) {
      const Geometry gr = bnorm::geometry_of(full_shape(p, split[r]), p.axis);
      const std::int64_t base = first_sample(split, static_cast<int>(r)) * per_sample;
      const std::int64_t m = gr.count_per_channel();
      for (std::int64_t o = 0; o < gr.outer; ++o) {
        for (std::int64_t c = 0; c < gr.channels; ++c) {
          for (std::int64_t i = 0; i < gr.inner; ++i) {
            const std::int64_t e = base + (o * gr.channels + c) * gr.inner + i;
            b.x[static_cast<std::size_t>(e)] =
                static_cast<T>(centre_of(c) + exact_offset(o * gr.inner + i, m));
          }
        }
      }
    }
  }
  for (std::int64_t c = 0; c < g.channels; ++c) {
    b.gamma.push_back(static_cast<T>(0.5 + 0.125 * static_cast<double>(c % 7)));
    b.beta.push_back(static_cast<T>(-0.25 * static_cast<double>(c % 5)));
  }
  return b;
}

// ---- cross-rank agreement ----

// Every rank's copy of `values` (all ranks pass the same size), bitwise, as doubles (exact for
// float and double).
template <class T>
std::vector<double> gather_all(const Communicator& comm, const std::vector<T>& values) {
  std::vector<double> local(values.begin(), values.end());
  std::vector<double> all(local.size() * static_cast<std::size_t>(comm.size()));
  comm.allgather(local, all);
  return all;
}

// The ranks agree that `ok` holds everywhere (one allreduce): used so that every rank takes the
// same branch afterwards and nobody skips a collective.
inline bool all_ranks(const Communicator& comm, bool ok) {
  double failures = ok ? 0 : 1;
  comm.allreduce_sum(std::span<double>(&failures, 1));
  return failures == 0;
}

// ---- the checks ----

// |got - want| in units of the last place of T at magnitude max(|want|, scale).
template <class T>
std::int64_t ulps_at_scale(T got, T want, double scale) {
  if (std::isnan(got) || std::isnan(want)) return std::numeric_limits<std::int64_t>::max();
  const double magnitude = std::max(std::fabs(static_cast<double>(want)), scale);
  if (magnitude == 0) return got == want ? 0 : std::numeric_limits<std::int64_t>::max();
  const double ulp =
      std::ldexp(static_cast<double>(std::numeric_limits<T>::epsilon()), std::ilogb(magnitude));
  return static_cast<std::int64_t>(
      std::ceil(std::fabs(static_cast<double>(got) - static_cast<double>(want)) / ulp));
}

// Within kMaxUlps (of each value, or of its scale when given), or bitwise.
template <class T>
void expect_close(const std::string& what, std::span<const T> got, std::span<const T> want,
                  bool bitwise, std::span<const double> scale = {}) {
  ASSERT_EQ(got.size(), want.size()) << what;
  ASSERT_TRUE(scale.empty() || scale.size() == want.size()) << what;
  std::size_t bad = 0;
  std::size_t first = 0;
  std::int64_t worst = 0;
  for (std::size_t k = 0; k < got.size(); ++k) {
    std::int64_t d = 0;
    if (bitwise) {
      d = same_bits(got[k], want[k]) ? 0 : 1 + kMaxUlps;
    } else if (scale.empty()) {
      d = ulp_distance(got[k], want[k]);
    } else {
      d = ulps_at_scale(got[k], want[k], scale[k]);
    }
    if (d > (bitwise ? 0 : kMaxUlps)) {
      if (bad++ == 0) first = k;
      worst = std::max(worst, d);
    }
  }
  if (bad == 0) return;
  ADD_FAILURE() << what << ": " << bad << " of " << got.size() << " values differ by more than "
                << (bitwise ? 0 : kMaxUlps) << " ulp" << (scale.empty() ? "" : " of their scale")
                << " (worst " << worst << "); first at " << first << ": got " << +got[first]
                << ", expected " << +want[first]
                << (scale.empty() ? std::string() : ", scale " + std::to_string(scale[first]));
}

template <class T>
void expect_no_nan(const std::string& what, std::span<const T> values) {
  std::size_t nans = 0;
  for (const T v : values) nans += std::isnan(v) ? 1 : 0;
  EXPECT_EQ(nans, 0u) << what << " holds NaN";
}

template <class T>
void expect_not_degenerate(const std::string& what, std::span<const T> values) {
  if (values.empty()) return;
  std::size_t zeros = 0;
  for (const T v : values) zeros += v == 0 ? 1 : 0;
  EXPECT_LE(static_cast<double>(zeros), 0.3 * static_cast<double>(values.size()))
      << what << ": the reference is degenerate (" << zeros << " of " << values.size()
      << " values are 0), the comparison would prove little";
}

// Runs `step` as described at the top of this file. Returns {this rank's outputs, the
// single-process reference on the whole batch} for further checks by the caller.
// Requires: split.size() == comm.size().
template <class T>
std::pair<Outputs<T>, Outputs<T>> expect_matches_single_process(const Step<T>& step,
                                                                const Problem& p,
                                                                const Split& split, Data data,
                                                                const Communicator& comm) {
  const GlobalBatch<T> global = make_global_batch<T>(p, split, data);
  const Batch<T> whole{global.shape, p.axis, global.x, global.dy, global.gamma, global.beta};
  const Outputs<T> reference = step(whole, nullptr);

  const std::int64_t per_sample = values_per_sample(p);
  const auto begin = static_cast<std::size_t>(first_sample(split, comm.rank()) * per_sample);
  const auto n =
      static_cast<std::size_t>(split[static_cast<std::size_t>(comm.rank())] * per_sample);
  const Batch<T> mine{full_shape(p, split[static_cast<std::size_t>(comm.rank())]),
                      p.axis,
                      std::span<const T>(global.x).subspan(begin, n),
                      std::span<const T>(global.dy).subspan(begin, n),
                      global.gamma,
                      global.beta};
  const Outputs<T> first = step(mine, &comm);
  const Outputs<T> rerun = step(mine, &comm);

  EXPECT_EQ(first.per_sample.size(), reference.per_sample.size());
  EXPECT_EQ(first.per_channel.size(), reference.per_channel.size());
  for (std::size_t k = 0; k < first.per_sample.size() && k < reference.per_sample.size(); ++k) {
    const Named<T>& got = first.per_sample[k];
    const std::span<const T> want =
        std::span<const T>(reference.per_sample[k].values).subspan(begin, n);
    const std::vector<double>& scale = reference.per_sample[k].scale;
    expect_close<T>(got.name, got.values, want, false,
                    scale.empty() ? std::span<const double>()
                                  : std::span<const double>(scale).subspan(begin, n));
    expect_close<T>(got.name + " (rerun)", rerun.per_sample[k].values, got.values, true);
    expect_no_nan<T>(got.name, got.values);
    expect_not_degenerate<T>(got.name + " (reference)", reference.per_sample[k].values);
  }
  for (std::size_t k = 0; k < first.per_channel.size() && k < reference.per_channel.size(); ++k) {
    const Named<T>& got = first.per_channel[k];
    expect_close<T>(got.name, got.values, reference.per_channel[k].values,
                    data == Data::kExact && got.exact, reference.per_channel[k].scale);
    expect_close<T>(got.name + " (rerun)", rerun.per_channel[k].values, got.values, true);
    expect_no_nan<T>(got.name, got.values);
    // Identical on every rank: every rank compares every other rank's copy with its own.
    const std::vector<double> all = gather_all(comm, got.values);
    for (int r = 0; r < comm.size(); ++r) {
      const std::span<const double> theirs(
          all.data() + static_cast<std::size_t>(r) * got.values.size(), got.values.size());
      for (std::size_t c = 0; c < got.values.size(); ++c) {
        if (!same_bits(theirs[c], static_cast<double>(got.values[c]))) {
          ADD_FAILURE() << got.name << "[" << c << "] differs between rank " << comm.rank() << " ("
                        << +got.values[c] << ") and rank " << r << " (" << theirs[c] << ")";
          break;
        }
      }
    }
  }
  return {first, reference};
}

// ---- error scales ----

// What rounding differences between two valid summation orders are relative to: the magnitude
// of the terms an output is computed from, in double, from a batch and the statistics it was
// normalized with (a = gamma * invstd, M = values per channel, x_c = |x| + |mean|):
//   y      x_c |a| + |beta|
//   dx     |a| (|dy| + invstd x_c S / M + sum|dy| / M)
//   dgamma S = sum |dy| x_c invstd (x - mean is formed from operands of magnitude x_c)
//   dbeta  sum |dy|
// and for double only (float statistics are far more precise than float's ulp):
//   mean   sum |x| / M           variance  2 sum x_c |x - mean| / M
// Where an output is not near 0 its own magnitude dominates and this is plain ulp comparison.
// For double every scale is multiplied by sqrt(M): the statistics are sums of M double terms, and
// two summation orders (one process, or ranks merged) differ by about sqrt(M) ulp of the terms
// (measured: 8 ulp for the mean of 480 values centred at 64). For float that error is far below
// float's ulp and the factor is 1.
struct ErrorScales {
  std::vector<double> y, dx, mean, variance, dgamma, dbeta;
};

template <class T>
ErrorScales error_scales(const Batch<T>& b, std::span<const T> mean, std::span<const T> variance,
                         double epsilon) {
  const Geometry g = b.geometry();
  const auto C = static_cast<std::size_t>(g.channels);
  const double M = static_cast<double>(std::max<std::int64_t>(1, g.count_per_channel()));
  const double summation = std::is_same_v<T, double> ? std::sqrt(M) : 1.0;
  ErrorScales s;
  s.y.resize(b.x.size());
  s.dx.resize(b.x.size());
  s.dgamma.assign(C, 0.0);
  s.dbeta.assign(C, 0.0);
  std::vector<double> abs_x(C, 0.0), centred_residual(C, 0.0);
  const auto channel_of = [&](std::size_t e) {
    return static_cast<std::size_t>(static_cast<std::int64_t>(e) / g.inner % g.channels);
  };
  const auto invstd = [&](std::size_t c) {
    const double v = static_cast<double>(variance[c]) + epsilon;
    return v > 0 ? 1 / std::sqrt(v) : 0.0;
  };
  const auto gamma = [&](std::size_t c) {
    return b.gamma.empty() ? 1.0 : static_cast<double>(b.gamma[c]);
  };
  const auto beta = [&](std::size_t c) {
    return b.beta.empty() ? 0.0 : static_cast<double>(b.beta[c]);
  };
  const auto centred = [&](std::size_t e, std::size_t c) {
    return std::fabs(static_cast<double>(b.x[e])) + std::fabs(static_cast<double>(mean[c]));
  };
  for (std::size_t e = 0; e < b.x.size(); ++e) {
    const std::size_t c = channel_of(e);
    const double residual = static_cast<double>(b.x[e]) - static_cast<double>(mean[c]);
    s.dgamma[c] += std::fabs(static_cast<double>(b.dy[e])) * centred(e, c) * invstd(c);
    s.dbeta[c] += std::fabs(static_cast<double>(b.dy[e]));
    abs_x[c] += std::fabs(static_cast<double>(b.x[e]));
    centred_residual[c] += centred(e, c) * std::fabs(residual);
  }
  for (std::size_t e = 0; e < b.x.size(); ++e) {
    const std::size_t c = channel_of(e);
    const double a = std::fabs(gamma(c) * invstd(c));
    s.y[e] = summation * (centred(e, c) * a + std::fabs(beta(c)));
    s.dx[e] = summation * a *
              (std::fabs(static_cast<double>(b.dy[e])) +
               invstd(c) * centred(e, c) * s.dgamma[c] / M + s.dbeta[c] / M);
  }
  for (std::size_t c = 0; c < C; ++c) {
    s.dgamma[c] *= summation;
    s.dbeta[c] *= summation;
  }
  if constexpr (std::is_same_v<T, double>) {
    for (std::size_t c = 0; c < C; ++c) {
      s.mean.push_back(summation * abs_x[c] / M);
      s.variance.push_back(summation * 2 * centred_residual[c] / M);
    }
  }
  return s;
}

// ---- problems and splits ----

// Layouts and axes every case runs on. Small enough that each rank's slice of a channel is one
// chunk (exact data stays exact), plus one that spans several chunks per channel.
inline std::vector<Problem> problems() {
  return {
      {"(N,C) C=5", {5}, 1},
      {"NCHW C=3 4x5", {3, 4, 5}, 1},
      {"NHWC 4x5 C=3", {4, 5, 3}, -1},
      {"(N,D,C,W) axis 2 C=4", {3, 4, 6}, 2},
      {"NCDHW C=2 2x3x2", {2, 2, 3, 2}, 1},
      {"(N,C) C=300", {300}, 1},
  };
}

// A problem with several chunks per channel (kLeafValues = 4096) for random data only.
inline Problem large_problem() {
  return {"NCHW C=3 32x32", {3, 32, 32}, 1};
}

// Splits of the global batch for `ranks` processes: uneven, with empty ranks, one sample each,
// and all empty.
inline std::vector<Split> splits(int ranks) {
  switch (ranks) {
    case 1:
      return {{7}, {2}, {0}};
    case 2:
      return {{16, 8}, {0, 3}, {1, 1}, {0, 0}};
    case 3:
      return {{1, 1, 1}, {5, 0, 2}, {0, 0, 0}};
    case 4:
      return {{5, 0, 3, 1}, {1, 1, 1, 1}, {0, 2, 0, 0}, {0, 0, 0, 0}};
    default: {
      Split uneven;
      for (int r = 0; r < ranks; ++r) uneven.push_back(r % 3);
      return {uneven, Split(static_cast<std::size_t>(ranks), 0)};
    }
  }
}

inline std::string describe(const Split& split) {
  std::string s = "{";
  for (std::size_t r = 0; r < split.size(); ++r) s += (r ? ", " : "") + std::to_string(split[r]);
  return s + "}";
}

}  // namespace bnorm_mpi_test
