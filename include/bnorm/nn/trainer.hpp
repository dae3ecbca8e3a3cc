// Trainer: one model, its optimizer and its data order, stepped and evaluated; checkpoints.
//
// Data parallelism needs only a Communicator: every rank builds the same model (same seed) and
// the same Batcher, takes its shard of each global batch, and the gradients are summed over the
// ranks before the (identical) SGD step, so all ranks keep identical parameters. With
// `sync_bn` the batch-norm statistics are those of the global batch. With a LocalCommunicator
// (one process) this is ordinary training.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bnorm/comm.hpp"
#include "bnorm/nn/batcher.hpp"
#include "bnorm/nn/idx.hpp"
#include "bnorm/nn/mlp.hpp"
#include "bnorm/nn/sgd.hpp"
#include "bnorm/standard_scaler.hpp"

namespace bnorm::nn {

struct TrainConfig {
  MlpSpec model;
  SgdOptions sgd;
  std::int64_t batch = 60;  // global batch
  std::uint64_t seed = 1;   // initialization and data order
  bool sync_bn = false;     // synchronized BN statistics over the communicator
  // Input standardization: when set, every batch (training and evaluation) is transformed by
  // it before the model sees it. Fitted by the caller on the training set (fit_standard_scaler,
  // bnorm/nn/standard_scaler.hpp); not part of checkpoints (refit it to resume).
  std::shared_ptr<const StandardScaler> input_scaler;
};

struct Evaluation {
  std::int64_t examples = 0;
  double accuracy = 0;
  double loss = 0;
  // Percentiles of the tracked unit's input to the last hidden activation (the paper's
  // Figure 1(b, c)) as training sees it: batch statistics (Mode::kBatchStatistics) over the
  // first kTrackedBatches batches of `batch` evaluated examples; 0 when fewer than one batch.
  double p15 = 0, p50 = 0, p85 = 0;
};

class Trainer {
 public:
  // `comm` must outlive the trainer. Throws bnorm::Error for invalid options, a batch smaller
  // than the number of ranks, or a dataset whose image size differs from model.inputs.
  Trainer(const TrainConfig& config, const Dataset& train, const Communicator& comm);

  // One SGD step on the next global batch. Returns the global batch's mean loss.
  double step();
  [[nodiscard]] std::int64_t steps_done() const { return step_; }

  // Accuracy, mean loss and tracked-unit percentiles on the first `limit` examples of `data`
  // (all when limit <= 0), in inference mode. Throws bnorm::Error for tracked_unit outside
  // the last hidden layer's width.
  Evaluation evaluate(const Dataset& data, std::int64_t limit, std::int64_t tracked_unit);

  // A safetensors file with every parameter and buffer ("model.<name>"), the optimizer's
  // velocities ("optimizer.<name>"), the step and the data order ("trainer.step",
  // "trainer.batcher" = seed, epoch, cursor), plus `metadata` and "format". Written atomically.
  void save_checkpoint(const std::filesystem::path& path,
                       const std::map<std::string, std::string>& metadata);
  // Restores everything save_checkpoint wrote, after checking every tensor's presence, dtype
  // and shape (bnorm::Error naming the file and tensor otherwise). Returns the metadata.
  std::map<std::string, std::string> load_checkpoint(const std::filesystem::path& path);

  [[nodiscard]] Mlp<float>& model() { return mlp_; }
  // Values per example of the tracked signal (the last hidden activation's input).
  [[nodiscard]] std::int64_t tracked_width() {
    return mlp_.net.layer(mlp_.tracked_layer).out_features();
  }
  [[nodiscard]] const TrainConfig& config() const { return config_; }

 private:
  TrainConfig config_;
  const Dataset& train_;
  const Communicator& comm_;
  Mlp<float> mlp_;
  std::vector<Parameter<float>> parameters_;
  Sgd<float> sgd_;
  Batcher batcher_;
  std::int64_t step_ = 0;
  Tensor<float> x_, dlogits_;
  std::vector<std::int32_t> labels_;
  std::vector<double> reduce_buffer_;
};

inline constexpr std::int64_t kTrackedBatches = 20;
inline constexpr const char* kCheckpointFormat = "bnorm-train-checkpoint/1";

}  // namespace bnorm::nn
