// Trainer: checkpoints resume bitwise; data-parallel training over a Communicator equals
// single-process training on the same global batches.
#include <gtest/gtest.h>
#include <unistd.h>

#include <barrier>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>

#include "bnorm/error.hpp"
#include "bnorm/nn/arch.hpp"
#include "bnorm/nn/trainer.hpp"

namespace bnorm::nn {
namespace {

namespace fs = std::filesystem;
const fs::path kTiny = fs::path(BNORM_TESTS_DIR) / "cli" / "data" / "tiny";

TrainConfig small_config(BnPlacement bn) {
  TrainConfig c;
  c.model.hidden = {32, 16};
  c.model.bn = bn;
  c.sgd = {0.2, 0.9, 1e-4, {}};  // momentum: the optimizer state must round-trip too
  c.batch = 24;
  c.seed = 9;
  return c;
}

// A small CNN with dropout and an lr drop: the random masks and the schedule must follow the
// step and the global example index through resume and data parallelism.
TrainConfig cnn_config(BnPlacement bn) {
  TrainConfig c = small_config(bn);
  c.model.arch = parse_arch("c4,p,f16");
  c.model.image = {28, 28, 1};
  c.model.dropout = 0.3;
  c.model.activation = ActivationKind::kRelu;
  c.model.init = {Init::Kind::kGlorotUniform, 0};
  c.sgd = {0.05, 0.9, 1e-4, {{20, 0.5}}};
  return c;
}

std::vector<float> snapshot(Trainer& t) {
  std::vector<float> all;
  for (const auto& p : t.model().net.parameters()) {
    all.insert(all.end(), p.value.begin(), p.value.end());
  }
  for (const auto& b : t.model().net.buffers()) {
    all.insert(all.end(), b.value.begin(), b.value.end());
  }
  return all;
}

fs::path temp_dir(const std::string& name) {
  const fs::path dir =
      fs::temp_directory_path() / ("bnorm_nn_" + name + "_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

TEST(NnTrainer, ResumedTrainingIsBitwiseIdentical) {
  const Dataset train = load_idx_dataset(kTiny, "train");
  const LocalCommunicator comm;
  const fs::path ckpt = temp_dir("resume") / "ckpt.safetensors";
  for (const TrainConfig& config :
       {small_config(BnPlacement::kNone), small_config(BnPlacement::kBefore),
        cnn_config(BnPlacement::kAfter)}) {
    Trainer straight(config, train, comm);
    // 17 steps: the checkpoint falls in the middle of an epoch (300 examples / 24).
    for (int i = 0; i < 17; ++i) (void)straight.step();
    straight.save_checkpoint(ckpt, {{"note", "test"}});
    std::vector<double> losses;
    for (int i = 0; i < 13; ++i) losses.push_back(straight.step());

    Trainer resumed(config, train, comm);
    const auto meta = resumed.load_checkpoint(ckpt);
    EXPECT_EQ(meta.at("note"), "test");
    EXPECT_EQ(resumed.steps_done(), 17);
    for (int i = 0; i < 13; ++i) EXPECT_EQ(resumed.step(), losses[static_cast<std::size_t>(i)]);
    const auto a = snapshot(straight);
    const auto b = snapshot(resumed);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  }
}

TEST(NnTrainer, CheckpointOfAnotherModelIsRejectedAndChangesNothing) {
  const Dataset train = load_idx_dataset(kTiny, "train");
  const LocalCommunicator comm;
  const fs::path ckpt = temp_dir("mismatch") / "ckpt.safetensors";
  Trainer with_bn(small_config(BnPlacement::kBefore), train, comm);
  with_bn.save_checkpoint(ckpt, {});
  Trainer without(small_config(BnPlacement::kNone), train, comm);
  const auto before = snapshot(without);
  try {
    (void)without.load_checkpoint(ckpt);
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(ckpt.string()), std::string::npos) << e.what();
  }
  EXPECT_EQ(snapshot(without), before);
}

// K ranks as K threads of one process: the collectives through shared memory and a barrier.
// Sums are taken in rank order, as an MPI implementation with a fixed reduction order would.
class ThreadGroup {
 public:
  explicit ThreadGroup(int size)
      : size_(size), barrier_(size), slots_(static_cast<std::size_t>(size)) {}
  class Member final : public Communicator {
   public:
    Member(ThreadGroup& g, int rank) : g_(g), rank_(rank) {}
    [[nodiscard]] int size() const override { return g_.size_; }
    [[nodiscard]] int rank() const override { return rank_; }
    void allreduce_sum(std::span<double> values) const override {
      g_.slots_[static_cast<std::size_t>(rank_)].assign(values.begin(), values.end());
      g_.barrier_.arrive_and_wait();
      for (std::size_t i = 0; i < values.size(); ++i) {
        double s = 0;
        for (const auto& slot : g_.slots_) s += slot[i];
        values[i] = s;
      }
      g_.barrier_.arrive_and_wait();
    }
    void allgather(std::span<const double> local, std::span<double> all) const override {
      g_.slots_[static_cast<std::size_t>(rank_)].assign(local.begin(), local.end());
      g_.barrier_.arrive_and_wait();
      for (std::size_t r = 0; r < g_.slots_.size(); ++r) {
        std::copy(g_.slots_[r].begin(), g_.slots_[r].end(),
                  all.begin() + static_cast<std::ptrdiff_t>(r * local.size()));
      }
      g_.barrier_.arrive_and_wait();
    }

   private:
    ThreadGroup& g_;
    int rank_;
  };

 private:
  int size_;
  std::barrier<> barrier_;
  std::vector<std::vector<double>> slots_;
};

TEST(NnTrainer, DataParallelWithSyncBnMatchesOneProcess) {
  const Dataset train = load_idx_dataset(kTiny, "train");
  for (TrainConfig config :
       {small_config(BnPlacement::kBefore), cnn_config(BnPlacement::kBefore)}) {
    config.sync_bn = true;
    const LocalCommunicator local;
    Trainer single(config, train, local);
    std::vector<double> single_losses;
    for (int i = 0; i < 40; ++i) single_losses.push_back(single.step());

    constexpr int kRanks = 3;  // 24 / 3 = 8 examples per rank
    ThreadGroup group(kRanks);
    std::vector<std::vector<float>> params(kRanks);
    std::vector<std::vector<double>> losses(kRanks);
    std::vector<std::thread> threads;
    for (int r = 0; r < kRanks; ++r) {
      threads.emplace_back([&, r] {
        ThreadGroup::Member comm(group, r);
        Trainer t(config, train, comm);
        for (int i = 0; i < 40; ++i) losses[static_cast<std::size_t>(r)].push_back(t.step());
        params[static_cast<std::size_t>(r)] = snapshot(t);
      });
    }
    for (auto& t : threads) t.join();
    const auto want = snapshot(single);
    for (int r = 0; r < kRanks; ++r) {
      // Every rank holds identical parameters (same reduced gradients, same SGD step)...
      EXPECT_EQ(params[static_cast<std::size_t>(r)], params[0]);
      // ...equal to one process's up to fp32 rounding of the differently ordered sums.
      for (std::size_t i = 0; i < want.size(); ++i) {
        ASSERT_NEAR(params[static_cast<std::size_t>(r)][i], want[i],
                    1e-4 + 1e-3 * std::abs(want[i]))
            << "rank " << r << " value " << i;
      }
      for (std::size_t i = 0; i < single_losses.size(); ++i) {
        EXPECT_NEAR(losses[static_cast<std::size_t>(r)][i], single_losses[i], 1e-4);
      }
    }
  }
}

}  // namespace
}  // namespace bnorm::nn
