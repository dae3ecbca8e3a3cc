// Uses the installed headers and library: a training forward pass on a (4, 2) batch.
#include <bnorm/bnorm.hpp>

#include <cstdio>
#include <vector>

int main() {
  const std::int64_t shape[] = {4, 2};
  const bnorm::Geometry g = bnorm::geometry_of(shape, 1);
  const std::vector<float> x = {1, 10, 2, 20, 3, 30, 4, 40};
  std::vector<float> y(x.size()), mean(2), variance(2);
  bnorm::forward_training(x, y, g, {}, {}, 0.0f, mean, variance);
  std::printf("mean %g %g variance %g %g\n", mean[0], mean[1], variance[0], variance[1]);
  return mean[0] == 2.5f && mean[1] == 25.0f && variance[0] == 1.25f && variance[1] == 125.0f ? 0
                                                                                              : 1;
}
