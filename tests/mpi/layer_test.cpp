// The BatchNorm layer with synchronized = true over MPI equals the same layer in one process
// holding the concatenated batch (harness.hpp says what is proved): outputs, gradients and the
// moving statistics after two training steps, for Keras and PyTorch conventions and renorm.
#include <gtest/gtest.h>

#include <bnorm/bnorm.hpp>
#include <memory>
#include <string>
#include <vector>

#include "harness.hpp"

namespace bnorm_mpi_test {
namespace {

// A communicator that does not own the one it forwards to (the harness owns world()).
class Borrowed final : public Communicator {
 public:
  explicit Borrowed(const Communicator& c) : c_(c) {}
  [[nodiscard]] int size() const override { return c_.size(); }
  [[nodiscard]] int rank() const override { return c_.rank(); }
  void allreduce_sum(std::span<double> v) const override { c_.allreduce_sum(v); }
  void allgather(std::span<const double> l, std::span<double> a) const override {
    c_.allgather(l, a);
  }

 private:
  const Communicator& c_;
};

enum class Case { kKeras, kPyTorch, kRenorm };

template <class T>
Outputs<T> layer_step(const Batch<T>& b, const Communicator* comm, Case which, int axis) {
  bnorm::BatchNormOptions options;
  if (which == Case::kPyTorch) options = bnorm::BatchNormOptions::pytorch(0.1);
  options.axis = axis;
  options.momentum = which == Case::kPyTorch ? 0.1 : 0.75;
  if (which == Case::kRenorm) {
    options.renorm = true;
    options.renorm_momentum = 0.5;
    options.renorm_clipping = {1.5, 1 / 1.5, 0.5};
  }
  if (comm != nullptr) {
    options.synchronized = true;
    options.communicator = std::make_shared<Borrowed>(*comm);
  }
  const Geometry g = b.geometry();
  bnorm::BasicBatchNorm<T> bn(g.channels, options);
  std::copy(b.gamma.begin(), b.gamma.end(), bn.gamma().begin());
  std::copy(b.beta.begin(), b.beta.end(), bn.beta().begin());
  std::vector<T> y(b.x.size()), dx(b.x.size());
  // Two steps, so the moving statistics (and renorm's r, d) move away from their initializers.
  bn.forward(b.x, b.shape, std::span<T>(y), /*training=*/true);
  bn.forward(b.x, b.shape, std::span<T>(y), /*training=*/true);
  bn.backward(b.x, b.dy, std::span<T>(dx));
  const auto mean = std::vector<T>(bn.batch_mean().begin(), bn.batch_mean().end());
  const auto variance = std::vector<T>(bn.batch_variance().begin(), bn.batch_variance().end());
  const ErrorScales s = error_scales<T>(b, mean, variance, options.epsilon);
  const auto copy = [](auto span) { return std::vector<T>(span.begin(), span.end()); };
  Outputs<T> out;
  out.per_sample = {{"y", y, false, s.y}, {"dx", dx, false, s.dx}};
  out.per_channel = {{"moving_mean", copy(bn.moving_mean()), true, s.mean},
                     {"moving_variance", copy(bn.moving_variance()), false, s.variance},
                     {"gamma_grad", copy(bn.gamma_grad()), false, s.dgamma},
                     {"beta_grad", copy(bn.beta_grad()), false, s.dbeta}};
  if (which == Case::kRenorm) {
    out.per_channel.push_back({"renorm_mean", copy(bn.renorm_mean()), true, s.mean});
    out.per_channel.push_back({"renorm_stddev", copy(bn.renorm_stddev()), false, s.variance});
  }
  return out;
}

template <class T>
void run_all_cases(Case which) {
  const Communicator& comm = world();
  for (const Problem& p : problems()) {
    for (const Split& split : splits(comm.size())) {
      if (total(split) == 0) continue;  // the empty global batch is tested below
      if (which == Case::kPyTorch && total(split) * values_per_sample(p) / 1 < 2) continue;
      SCOPED_TRACE(p.name + " split " + describe(split));
      const Step<T> step = [&](const Batch<T>& b, const Communicator* c) {
        return layer_step<T>(b, c, which, p.axis);
      };
      expect_matches_single_process<T>(step, p, split, Data::kRandom, comm);
    }
  }
}

TEST(SynchronizedLayer, KerasFloatEqualsSingleProcess) {
  run_all_cases<float>(Case::kKeras);
}
TEST(SynchronizedLayer, KerasDoubleEqualsSingleProcess) {
  run_all_cases<double>(Case::kKeras);
}
TEST(SynchronizedLayer, PyTorchFloatEqualsSingleProcess) {
  run_all_cases<float>(Case::kPyTorch);
}
TEST(SynchronizedLayer, RenormFloatEqualsSingleProcess) {
  run_all_cases<float>(Case::kRenorm);
}
TEST(SynchronizedLayer, RenormDoubleEqualsSingleProcess) {
  run_all_cases<double>(Case::kRenorm);
}

// Every rank empty: no NaN anywhere and the moving statistics keep their initial values.
TEST(SynchronizedLayer, AllEmptyBatchUpdatesNothing) {
  const Communicator& comm = world();
  bnorm::BatchNormOptions options;
  options.axis = 1;
  options.synchronized = true;
  options.communicator = std::make_shared<Borrowed>(comm);
  bnorm::BatchNorm bn(3, options);
  const std::vector<std::int64_t> shape = {0, 3, 4};
  std::vector<float> x, y, dx;
  bn.forward(x, shape, y, true);
  bn.backward(x, x, dx);
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(bn.moving_mean()[c], 0.0f);
    EXPECT_EQ(bn.moving_variance()[c], 1.0f);
    EXPECT_EQ(bn.gamma_grad()[c], 0.0f);
    EXPECT_EQ(bn.beta_grad()[c], 0.0f);
  }
}

// Synchronized ghost batch norm: every rank holds G virtual batches of v samples; rank r's k-th
// virtual batch is normalized with the statistics of all ranks' k-th virtual batches. One process
// holding the batch reordered as [k][r] (rank r's k-th slice at position k * R + r) with virtual
// batches of v * R samples computes the same thing. kStrided: rank r's k-th virtual batch is its
// samples k, k + G, ... (tf.keras), reordered the same way into contiguous ones.
template <class T>
void expect_synchronized_virtual_batches_match(
    const std::vector<std::int64_t>& sample_shape, int axis,
    bnorm::VirtualBatchLayout layout = bnorm::VirtualBatchLayout::kContiguous) {
  const Communicator& comm = world();
  const std::int64_t R = comm.size(), v = 2, G = 3, B = v * G;
  std::int64_t per_sample = 1;
  for (const auto d : sample_shape) per_sample *= d;
  const auto shape_of = [&](std::int64_t n) {
    std::vector<std::int64_t> shape{n};
    shape.insert(shape.end(), sample_shape.begin(), sample_shape.end());
    return shape;
  };
  // Global data by (rank, local sample): identical on every rank.
  const auto value = [&](std::int64_t r, std::int64_t sample, std::int64_t e, std::uint64_t seed) {
    const auto index = static_cast<std::uint64_t>((r * B + sample) * per_sample + e);
    return static_cast<T>(uniform(index, seed) * 2 + (seed == 1 ? 5.0 : 0.0));
  };
  const auto make_layer = [&](std::int64_t virtual_batch, const Communicator* c) {
    bnorm::BatchNormOptions options;
    options.axis = axis;
    options.momentum = 0.5;
    options.virtual_batch_size = virtual_batch;
    if (c != nullptr) {
      options.synchronized = true;
      options.communicator = std::make_shared<Borrowed>(*c);
      options.virtual_batch_layout = layout;  // the one-process reference stays contiguous
    }
    const auto shape = shape_of(1);
    return bnorm::BasicBatchNorm<T>(bnorm::geometry_of(shape, axis).channels, options);
  };
  // This rank's batch.
  std::vector<T> x(static_cast<std::size_t>(B * per_sample)), dy(x.size());
  for (std::int64_t s = 0; s < B; ++s) {
    for (std::int64_t e = 0; e < per_sample; ++e) {
      x[static_cast<std::size_t>(s * per_sample + e)] = value(comm.rank(), s, e, 1);
      dy[static_cast<std::size_t>(s * per_sample + e)] = value(comm.rank(), s, e, 2);
    }
  }
  // The reordered global batch: position (k * R + r) * v + j holds rank r's sample k * v + j.
  std::vector<T> gx(static_cast<std::size_t>(R * B * per_sample)), gdy(gx.size());
  const auto global_position = [&](std::int64_t r, std::int64_t s) {
    if (layout == bnorm::VirtualBatchLayout::kStrided) return ((s % G) * R + r) * v + s / G;
    return ((s / v) * R + r) * v + s % v;
  };
  for (std::int64_t r = 0; r < R; ++r) {
    for (std::int64_t s = 0; s < B; ++s) {
      for (std::int64_t e = 0; e < per_sample; ++e) {
        const auto at = static_cast<std::size_t>(global_position(r, s) * per_sample + e);
        gx[at] = value(r, s, e, 1);
        gdy[at] = value(r, s, e, 2);
      }
    }
  }
  auto single = make_layer(v * R, nullptr);
  std::vector<T> gy(gx.size()), gdx(gx.size());
  single.forward(gx, shape_of(R * B), std::span<T>(gy), true);
  single.backward(gx, gdy, std::span<T>(gdx));

  auto synced = make_layer(v, &comm);
  std::vector<T> y(x.size()), dx(x.size());
  synced.forward(x, shape_of(B), std::span<T>(y), true);
  synced.backward(x, dy, std::span<T>(dx));

  std::vector<T> want_y(x.size()), want_dx(x.size());
  for (std::int64_t s = 0; s < B; ++s) {
    for (std::int64_t e = 0; e < per_sample; ++e) {
      const auto at = static_cast<std::size_t>(global_position(comm.rank(), s) * per_sample + e);
      want_y[static_cast<std::size_t>(s * per_sample + e)] = gy[at];
      want_dx[static_cast<std::size_t>(s * per_sample + e)] = gdx[at];
    }
  }
  // Sums over R * v values in another order: a few ulp of the terms (|y| ~ 3, |dx| ~ 3).
  const std::vector<double> scale(x.size(), 4.0);
  expect_close<T>("y", y, want_y, false, scale);
  expect_close<T>("dx", dx, want_dx, false, scale);
  const auto per_channel = [](auto a) { return std::vector<T>(a.begin(), a.end()); };
  const std::vector<double> channel_scale(static_cast<std::size_t>(synced.channels()), 8.0);
  expect_close<T>("moving_mean", per_channel(synced.moving_mean()),
                  per_channel(single.moving_mean()), false, channel_scale);
  expect_close<T>("moving_variance", per_channel(synced.moving_variance()),
                  per_channel(single.moving_variance()), false, channel_scale);
  expect_close<T>("gamma_grad", per_channel(synced.gamma_grad()), per_channel(single.gamma_grad()),
                  false, std::vector<double>(channel_scale.size(), 64.0));
  // Identical on every rank.
  for (const auto& values :
       {per_channel(synced.moving_mean()), per_channel(synced.moving_variance()),
        per_channel(synced.gamma_grad()), per_channel(synced.beta_grad())}) {
    const std::vector<double> all = gather_all(comm, values);
    for (std::size_t k = 0; k < all.size(); ++k) {
      EXPECT_TRUE(same_bits(all[k], static_cast<double>(values[k % values.size()])))
          << "per-channel value " << k % values.size() << " differs between ranks";
    }
  }
}

TEST(SynchronizedLayer, VirtualBatchesEqualOneProcessWithInterleavedBatches) {
  expect_synchronized_virtual_batches_match<float>({3, 4, 5}, 1);   // NCHW
  expect_synchronized_virtual_batches_match<float>({4, 5, 3}, -1);  // NHWC
  expect_synchronized_virtual_batches_match<double>({7}, 1);        // (N, C)
  expect_synchronized_virtual_batches_match<float>({3, 4, 5}, 1,
                                                   bnorm::VirtualBatchLayout::kStrided);
  expect_synchronized_virtual_batches_match<double>({7}, 1, bnorm::VirtualBatchLayout::kStrided);
}

// Ranks with different numbers of virtual batches: the same error on every rank, no hang.
TEST(SynchronizedLayer, UnequalVirtualBatchCountsAreAnErrorOnEveryRank) {
  const Communicator& comm = world();
  if (comm.size() < 2) GTEST_SKIP() << "needs two ranks";
  bnorm::BatchNormOptions options;
  options.axis = 1;
  options.virtual_batch_size = 2;
  options.synchronized = true;
  options.communicator = std::make_shared<Borrowed>(comm);
  bnorm::BatchNorm bn(3, options);
  const std::int64_t samples = comm.rank() == 0 ? 4 : 2;
  const std::vector<std::int64_t> shape = {samples, 3};
  std::vector<float> x(static_cast<std::size_t>(samples * 3), 1.0f), y(x.size());
  std::string message;
  try {
    bn.forward(x, shape, y, true);
  } catch (const bnorm::Error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("different numbers of virtual batches"), std::string::npos) << message;
}

}  // namespace
}  // namespace bnorm_mpi_test
