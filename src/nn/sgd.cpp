// SGD with momentum and weight decay, PyTorch's torch.optim.SGD formulation (dampening 0).
#include <fmt/format.h>

#include "bnorm/error.hpp"
#include "bnorm/nn/sgd.hpp"

namespace bnorm::nn {

void validate(const SgdOptions& o) {
  if (!(o.learning_rate > 0))
    throw Error(fmt::format("SgdOptions::learning_rate {}; expected > 0", o.learning_rate));
  if (!(o.momentum >= 0 && o.momentum < 1)) {
    throw Error(fmt::format("SgdOptions::momentum {}; expected a value in [0, 1)", o.momentum));
  }
  if (!(o.weight_decay >= 0)) {
    throw Error(fmt::format("SgdOptions::weight_decay {}; expected >= 0", o.weight_decay));
  }
  std::int64_t previous = 0;
  for (const LrDrop& d : o.lr_drops) {
    if (d.step <= previous) {
      throw Error(
          fmt::format("SgdOptions::lr_drops step {}; expected steps > 0 and strictly "
                      "increasing (previous {})",
                      d.step, previous));
    }
    if (!(d.factor > 0)) {
      throw Error(
          fmt::format("SgdOptions::lr_drops factor {} at step {}; expected > 0", d.factor, d.step));
    }
    previous = d.step;
  }
}

double learning_rate_at(const SgdOptions& o, std::int64_t step) {
  double lr = o.learning_rate;
  for (const LrDrop& d : o.lr_drops) {
    if (d.step <= step) lr *= d.factor;
  }
  return lr;
}

template <class T>
Sgd<T>::Sgd(const SgdOptions& options, const std::vector<Parameter<T>>& parameters)
    : options_(options), parameters_(parameters) {
  validate(options);
  if (options.momentum > 0) {
    for (const auto& p : parameters_) {
      velocity_.emplace_back(std::vector<std::int64_t>{static_cast<std::int64_t>(p.value.size())});
    }
  }
}

template <class T>
void Sgd<T>::step(double learning_rate) {
  const T lr = static_cast<T>(learning_rate);
  const T mu = static_cast<T>(options_.momentum);
  const T wd = static_cast<T>(options_.weight_decay);
  for (std::size_t k = 0; k < parameters_.size(); ++k) {
    T* w = parameters_[k].value.data();
    const T* g = parameters_[k].grad.data();
    const std::size_t n = parameters_[k].value.size();
    if (velocity_.empty()) {
      for (std::size_t i = 0; i < n; ++i) w[i] -= lr * (g[i] + wd * w[i]);
      continue;
    }
    T* v = velocity_[k].data();
    for (std::size_t i = 0; i < n; ++i) {
      v[i] = mu * v[i] + (g[i] + wd * w[i]);
      w[i] -= lr * v[i];
    }
  }
}

template <class T>
std::vector<Buffer<T>> Sgd<T>::state() {
  std::vector<Buffer<T>> s;
  for (std::size_t k = 0; k < velocity_.size(); ++k) {
    s.push_back({parameters_[k].name, parameters_[k].shape, velocity_[k].span()});
  }
  return s;
}

template class Sgd<float>;
template class Sgd<double>;

}  // namespace bnorm::nn
