// Softmax cross-entropy over class logits.
#pragma once

#include <cstdint>
#include <span>

#include "bnorm/nn/tensor.hpp"

namespace bnorm::nn {

// logits: (N, K); labels: N values in [0, K). Returns sum_n -log softmax(logits_n)[label_n] /
// normalizer (the loss averaged over a global batch of `normalizer` examples, of which this
// process holds N), computed with log-sum-exp in double. When dlogits is not null it is resized
// and assigned (softmax - onehot) / normalizer.
// Throws bnorm::Error for labels.size() != N, a label outside [0, K) or normalizer <= 0.
template <class T>
double softmax_cross_entropy(const Tensor<T>& logits, std::span<const std::int32_t> labels,
                             std::int64_t normalizer, Tensor<T>* dlogits);

// The number of rows whose largest logit (first on ties) is the label.
template <class T>
std::int64_t count_correct(const Tensor<T>& logits, std::span<const std::int32_t> labels);

}  // namespace bnorm::nn
