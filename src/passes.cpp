// The elementwise passes (passes.hpp).
#include "passes.hpp"

#include <cstddef>

#include "kernels/coefficients.hpp"
#include "kernels/registry.hpp"

namespace bnorm::detail {

template <class T>
void apply_normalize(const T* x, T* y, const Geometry& g, const T* gamma, const T* beta,
                     const double* mean, const double* variance, double epsilon,
                     const kernels::Epilogue<T>& epilogue) {
  const kernels::Kernel<T>& kernel = kernels::select<T>(g);
  const auto plan = kernels::plan_normalize<T>(kernel, static_cast<std::size_t>(g.channels), gamma,
                                               beta, mean, variance, epsilon);
  const kernels::Form form =
      plan.working_precision ? kernels::Form::kWorking : kernels::Form::kDouble;
  kernels::select<T>(g, form).normalize(x, y, g, plan.coefficients, epilogue);
}

template <class T>
void apply_backward_input(const T* x, const T* dy, T* dx, const Geometry& g, const T* gamma,
                          const T* mean, const T* variance, double epsilon, const double* sum_dy,
                          const double* sum_dy_xhat, double count) {
  const auto plan = kernels::plan_backward<T>(static_cast<std::size_t>(g.channels), gamma, mean,
                                              variance, epsilon, sum_dy, sum_dy_xhat, count);
  const kernels::Form form =
      plan.working_precision ? kernels::Form::kWorking : kernels::Form::kDouble;
  kernels::select<T>(g, form).backward_input(x, dy, dx, g, plan.coefficients);
}

#define BNORM_INSTANTIATE(T)                                                                      \
  template void apply_normalize<T>(const T*, T*, const Geometry&, const T*, const T*,             \
                                   const double*, const double*, double,                          \
                                   const kernels::Epilogue<T>&);                                  \
  template void apply_backward_input<T>(const T*, const T*, T*, const Geometry&, const T*,        \
                                        const T*, const T*, double, const double*, const double*, \
                                        double);
BNORM_INSTANTIATE(float)
BNORM_INSTANTIATE(double)
#undef BNORM_INSTANTIATE

}  // namespace bnorm::detail
