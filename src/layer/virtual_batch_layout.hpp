// Virtual batch layouts (VirtualBatchLayout): the layer computes every virtual batch on a
// contiguous slice; kStrided batches are gathered into that order first and scattered back.
#pragma once

#include <cstdint>
#include <span>

namespace bnorm::detail {

// kStrided -> contiguous: of `samples` samples along axis 0 (each src.size() / samples values),
// sample a*groups + j goes to position j*(samples / groups) + a. Requires groups to divide
// samples, src and dst of equal size, not overlapping.
template <class T>
void gather_strided_virtual_batches(std::span<const T> src, std::span<T> dst, std::int64_t samples,
                                    std::int64_t groups);
// The inverse: contiguous virtual batches back to the caller's (strided) order.
template <class T>
void scatter_strided_virtual_batches(std::span<const T> src, std::span<T> dst, std::int64_t samples,
                                     std::int64_t groups);

}  // namespace bnorm::detail
