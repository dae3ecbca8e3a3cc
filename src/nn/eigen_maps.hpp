// Eigen views of Tensor: row-major matrices over the tensor's own storage (no copies).
#pragma once

#include <Eigen/Core>

#include "bnorm/nn/tensor.hpp"

namespace bnorm::nn::detail {

template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <class T>
Eigen::Map<RowMatrix<T>, Eigen::Aligned64> as_matrix(Tensor<T>& t) {
  return {t.data(), t.rows(), t.cols()};
}
template <class T>
Eigen::Map<const RowMatrix<T>, Eigen::Aligned64> as_matrix(const Tensor<T>& t) {
  return {t.data(), t.rows(), t.cols()};
}

}  // namespace bnorm::nn::detail
