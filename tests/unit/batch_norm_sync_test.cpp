// Synchronized BatchNorm with several ranks simulated by threads sharing an in-process
// communicator (the MPI tests under tests/mpi/ do the same across processes): every rank ends a
// step with bitwise identical statistics, moving statistics and parameter gradients, and equals
// one process that holds the concatenated batch. Ranks hold uneven batches, one of them none.
#include <gtest/gtest.h>

#include <barrier>
#include <bnorm/batch_norm.hpp>
#include <cmath>
#include <functional>
#include <memory>
#include <thread>

#include "layer_reference.hpp"

namespace bnorm {
namespace {

using testing::random_values;

// Collectives through shared memory: each rank writes its contribution, then reads everyone's
// after a barrier. Sums are taken in rank order, so every rank gets the same bits.
class ThreadGroup {
 public:
  explicit ThreadGroup(int ranks)
      : ranks_(ranks), barrier_(ranks), slots_(static_cast<std::size_t>(ranks)) {}
  [[nodiscard]] int size() const { return ranks_; }
  void publish(int rank, std::span<const double> values) {
    slots_[static_cast<std::size_t>(rank)].assign(values.begin(), values.end());
    barrier_.arrive_and_wait();
  }
  [[nodiscard]] const std::vector<double>& slot(int rank) const {
    return slots_[static_cast<std::size_t>(rank)];
  }
  void done() { barrier_.arrive_and_wait(); }  // nobody overwrites a slot still being read

 private:
  int ranks_;
  std::barrier<> barrier_;
  std::vector<std::vector<double>> slots_;
};

class ThreadCommunicator final : public Communicator {
 public:
  ThreadCommunicator(ThreadGroup& group, int rank) : group_(group), rank_(rank) {}
  [[nodiscard]] int size() const override { return group_.size(); }
  [[nodiscard]] int rank() const override { return rank_; }
  void allreduce_sum(std::span<double> values) const override {
    group_.publish(rank_, values);
    for (std::size_t i = 0; i < values.size(); ++i) {
      double sum = 0;
      for (int r = 0; r < group_.size(); ++r) sum += group_.slot(r)[i];
      values[i] = sum;
    }
    group_.done();
  }
  void allgather(std::span<const double> local, std::span<double> all) const override {
    group_.publish(rank_, local);
    for (int r = 0; r < group_.size(); ++r) {
      std::copy(
          group_.slot(r).begin(), group_.slot(r).end(),
          all.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(r) * local.size()));
    }
    group_.done();
  }

 private:
  ThreadGroup& group_;
  int rank_;
};

void check_ranks_agree(BatchNormOptions o) {
  const std::int64_t C = 3, L = 4;  // NCL with axis 1
  o.axis = 1;
  const std::vector<std::int64_t> samples = {2, 0, 5};  // uneven, one rank empty
  const int ranks = static_cast<int>(samples.size());
  o.synchronized = true;
  ThreadGroup group(ranks);
  std::vector<std::unique_ptr<BatchNorm>> layers;
  for (int r = 0; r < ranks; ++r) {
    auto ro = o;
    ro.communicator = std::make_shared<ThreadCommunicator>(group, r);
    layers.push_back(std::make_unique<BatchNorm>(C, ro));
  }
  BatchNormOptions single_options = o;
  single_options.synchronized = false;
  single_options.communicator = nullptr;
  BatchNorm single(C, single_options);

  for (int step = 0; step < 3; ++step) {
    // The global batch, then each rank's slice of samples.
    const auto x = random_values<float>(static_cast<std::size_t>(7 * C * L), 40 + step, 2.0, 1.0);
    const auto dy = random_values<float>(x.size(), 50 + step);
    std::vector<std::vector<float>> y(ranks), dx(ranks);
    std::vector<std::thread> threads;
    std::int64_t first = 0;
    for (int r = 0; r < ranks; ++r) {
      const std::int64_t n = samples[static_cast<std::size_t>(r)];
      const auto begin = static_cast<std::size_t>(first * C * L);
      const auto count = static_cast<std::size_t>(n * C * L);
      first += n;
      threads.emplace_back([&, r, n, begin, count] {
        const std::vector<float> xs(x.begin() + static_cast<long>(begin),
                                    x.begin() + static_cast<long>(begin + count));
        const std::vector<float> dys(dy.begin() + static_cast<long>(begin),
                                     dy.begin() + static_cast<long>(begin + count));
        auto& yr = y[static_cast<std::size_t>(r)];
        auto& dxr = dx[static_cast<std::size_t>(r)];
        yr.resize(count);
        dxr.resize(count);
        const std::vector<std::int64_t> shape = {n, C, L};
        layers[static_cast<std::size_t>(r)]->forward(xs, shape, yr, true);
        layers[static_cast<std::size_t>(r)]->backward(xs, dys, dxr);
      });
    }
    for (auto& t : threads) t.join();
    std::vector<float> ys(x.size()), dxs(x.size());
    const std::vector<std::int64_t> shape = {7, C, L};
    single.forward(x, shape, ys, true);
    single.backward(x, dy, dxs);

    const BatchNorm& r0 = *layers[0];
    for (int r = 1; r < ranks; ++r) {
      const BatchNorm& other = *layers[static_cast<std::size_t>(r)];
      for (std::int64_t c = 0; c < C; ++c) {
        EXPECT_EQ(other.batch_mean()[c], r0.batch_mean()[c]);
        EXPECT_EQ(other.batch_variance()[c], r0.batch_variance()[c]);
        EXPECT_EQ(other.moving_mean()[c], r0.moving_mean()[c]);
        EXPECT_EQ(other.moving_variance()[c], r0.moving_variance()[c]);
        EXPECT_EQ(other.gamma_grad()[c], r0.gamma_grad()[c]);
        EXPECT_EQ(other.beta_grad()[c], r0.beta_grad()[c]);
      }
    }
    // Equal to one process holding the whole batch (merging per-rank moments rounds differently
    // from one pass, so within float tolerance rather than bitwise).
    const auto near = [](double a, double b) { return testing::close(a, b, 1e-5, 1e-5); };
    for (std::int64_t c = 0; c < C; ++c) {
      EXPECT_TRUE(near(r0.moving_mean()[c], single.moving_mean()[c]));
      EXPECT_TRUE(near(r0.moving_variance()[c], single.moving_variance()[c]));
      EXPECT_TRUE(near(r0.gamma_grad()[c], single.gamma_grad()[c]));
      EXPECT_TRUE(near(r0.beta_grad()[c], single.beta_grad()[c]));
    }
    std::size_t at = 0;
    for (int r = 0; r < ranks; ++r) {
      for (std::size_t i = 0; i < y[static_cast<std::size_t>(r)].size(); ++i, ++at) {
        EXPECT_TRUE(near(y[static_cast<std::size_t>(r)][i], ys[at])) << r << " " << i;
        EXPECT_TRUE(near(dx[static_cast<std::size_t>(r)][i], dxs[at])) << r << " " << i;
      }
    }
  }
}

TEST(BatchNormSync, RanksAgreeBitwiseAndEqualOneProcess) {
  check_ranks_agree(BatchNormOptions::pytorch());
  check_ranks_agree(BatchNormOptions::keras());
  BatchNormOptions renorm;
  renorm.renorm = true;
  renorm.renorm_clipping = {1.5, 0.5, 0.5};
  check_ranks_agree(renorm);
}

TEST(BatchNormSync, EmptyLocalBatchWithOneProcessUpdatesNothing) {
  BatchNormOptions o;
  o.synchronized = true;
  BatchNorm bn(3, o);
  const std::vector<std::int64_t> shape = {0, 3};
  std::vector<float> x, y, dx;
  EXPECT_FALSE(bn.forward(x, shape, y, true).updated_statistics);
  bn.backward(x, x, dx);
  EXPECT_EQ(bn.num_batches_tracked(), 0);
  EXPECT_EQ(bn.gamma_grad()[0], 0.0f);
}

}  // namespace
}  // namespace bnorm
