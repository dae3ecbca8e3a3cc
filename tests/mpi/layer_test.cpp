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

}  // namespace
}  // namespace bnorm_mpi_test
