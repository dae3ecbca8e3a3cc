// Trainer: the training step (forward, loss, backward, gradient all-reduce, SGD) and evaluation.
#include <algorithm>

#include <fmt/format.h>

#include "bnorm/error.hpp"
#include "bnorm/nn/loss.hpp"
#include "bnorm/nn/metrics.hpp"
#include "bnorm/nn/trainer.hpp"

namespace bnorm::nn {
namespace {

MlpSpec with_comm(MlpSpec spec, bool sync_bn, const Communicator& comm) {
  spec.bn_options.comm = sync_bn ? &comm : nullptr;
  return spec;
}

// The inputs as the model sees them: standardized in place when the config has a scaler.
void preprocess(const TrainConfig& config, Tensor<float>& x) {
  if (config.input_scaler)
    config.input_scaler->transform(std::span<const float>(x.span()), x.span());
}

Mlp<float> build(const TrainConfig& config, const Communicator& comm) {
  Rng rng(config.seed);
  return build_mlp<float>(with_comm(config.model, config.sync_bn, comm), rng);
}

}  // namespace

Trainer::Trainer(const TrainConfig& config, const Dataset& train, const Communicator& comm)
    : config_(config),
      train_(train),
      comm_(comm),
      mlp_(build(config, comm)),
      parameters_(mlp_.net.parameters()),
      sgd_(config.sgd, parameters_),
      batcher_(train.size(), config.batch, config.seed) {
  if (train.features() != config.model.inputs) {
    throw Error(fmt::format("training images have {} pixels; expected {} (the model's inputs)",
                            train.features(), config.model.inputs));
  }
  const Shard shard = shard_of(config.batch, comm.rank(), comm.size());
  const std::int64_t local = shard.end - shard.begin;
  const std::int64_t vb = config.model.bn_options.virtual_batch;
  if (config.model.bn != BnPlacement::kNone) {
    if (vb > 0 && local % vb != 0) {
      throw Error(
          fmt::format("BatchNormLayerOptions::virtual_batch {} with TrainConfig::batch {} ({} "
                      "examples in this process); expected the virtual batch to divide it",
                      vb, config.batch, local));
    }
    if (!config.sync_bn && local < 2) {
      throw Error(
          fmt::format("TrainConfig::batch {} with batch norm ({} examples in this process); "
                      "expected at least 2 per process for batch statistics",
                      config.batch, local));
    }
  }
  if (config.batch < comm.size()) {
    throw Error(
        fmt::format("TrainConfig::batch {} with {} processes; expected a batch of at least one "
                    "example per process",
                    config.batch, comm.size()));
  }
}

double Trainer::step() {
  const auto batch = batcher_.next();
  const Shard shard = shard_of(config_.batch, comm_.rank(), comm_.size());
  gather(train_,
         batch.subspan(static_cast<std::size_t>(shard.begin),
                       static_cast<std::size_t>(shard.end - shard.begin)),
         x_, labels_);
  preprocess(config_, x_);
  mlp_.net.begin_step(step_, shard.begin);
  const Tensor<float>& logits = mlp_.net.forward(x_, Mode::kTraining);
  // Normalized by the global batch, so that summing over ranks gives the global mean's gradient.
  double loss = softmax_cross_entropy(logits, labels_, config_.batch, &dlogits_);
  mlp_.net.backward(dlogits_);
  if (comm_.size() > 1) {
    // One all-reduce for every gradient not already summed over ranks, plus the loss.
    reduce_buffer_.clear();
    for (const auto& p : parameters_) {
      if (!p.reduced_over_ranks)
        reduce_buffer_.insert(reduce_buffer_.end(), p.grad.begin(), p.grad.end());
    }
    reduce_buffer_.push_back(loss);
    comm_.allreduce_sum(reduce_buffer_);
    std::size_t k = 0;
    for (const auto& p : parameters_) {
      if (p.reduced_over_ranks) continue;
      for (float& g : p.grad) g = static_cast<float>(reduce_buffer_[k++]);
    }
    loss = reduce_buffer_.back();
  }
  sgd_.step(learning_rate_at(config_.sgd, step_));
  ++step_;
  return loss;
}

Evaluation Trainer::evaluate(const Dataset& data, std::int64_t limit, std::int64_t tracked_unit) {
  const std::int64_t n = limit > 0 ? std::min(limit, data.size()) : data.size();
  const std::int64_t width = tracked_width();
  if (tracked_unit < 0 || tracked_unit >= width) {
    throw Error(
        fmt::format("Trainer::evaluate: tracked_unit {}; expected [0, {}) (the values "
                    "per example of the last hidden activation's input)",
                    tracked_unit, width));
  }
  // Chunks bound the activation memory; the result does not depend on the chunk size.
  constexpr std::int64_t kChunk = 1000;
  std::vector<std::int64_t> indices;
  std::vector<double> tracked;
  tracked.reserve(static_cast<std::size_t>(n));
  Tensor<float> x;
  std::vector<std::int32_t> labels;
  Evaluation e;
  e.examples = n;
  std::int64_t correct = 0;
  double loss_sum = 0;
  for (std::int64_t begin = 0; begin < n; begin += kChunk) {
    const std::int64_t end = std::min(n, begin + kChunk);
    indices.resize(static_cast<std::size_t>(end - begin));
    for (std::int64_t i = begin; i < end; ++i) indices[static_cast<std::size_t>(i - begin)] = i;
    gather(data, indices, x, labels);
    preprocess(config_, x);
    const Tensor<float>& logits = mlp_.net.forward(x, Mode::kInference);
    correct += count_correct(logits, labels);
    loss_sum += softmax_cross_entropy<float>(logits, labels, 1, nullptr);
  }
  // The tracked signal as the activation sees it in training: batch statistics over batches of
  // the training batch size (the first kTrackedBatches of the evaluated examples).
  const std::int64_t b = config_.batch;
  for (std::int64_t begin = 0; begin + b <= n && begin < kTrackedBatches * b; begin += b) {
    indices.resize(static_cast<std::size_t>(b));
    for (std::int64_t i = 0; i < b; ++i) indices[static_cast<std::size_t>(i)] = begin + i;
    gather(data, indices, x, labels);
    preprocess(config_, x);
    mlp_.net.forward(x, Mode::kBatchStatistics);
    const Tensor<float>& signal = mlp_.net.output(mlp_.tracked_layer);
    for (std::int64_t r = 0; r < signal.rows(); ++r) tracked.push_back(signal(r, tracked_unit));
  }
  if (n > 0) {
    e.accuracy = static_cast<double>(correct) / static_cast<double>(n);
    e.loss = loss_sum / static_cast<double>(n);
  }
  if (!tracked.empty()) {
    e.p15 = percentile(tracked, 15);
    e.p50 = percentile(tracked, 50);
    e.p85 = percentile(tracked, 85);
  }
  return e;
}

}  // namespace bnorm::nn
