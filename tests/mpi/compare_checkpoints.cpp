// compare_checkpoints A B [RTOL]: every tensor of two safetensors files (same names, dtypes,
// shapes) agrees norm-wise: max |a - b| <= RTOL * max |b| over the tensor (default 1e-6), the
// usual measure for tensors whose elements differ by rounding carried through training. Non-float
// tensors must be equal. Prints the worst relative difference; exit 0 when they agree.
#include <bnorm/error.hpp>
#include <bnorm/safetensors.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: compare_checkpoints A B [rtol]\n");
    return 2;
  }
  const double rtol = argc > 3 ? std::atof(argv[3]) : 1e-6;
  try {
    const auto a = bnorm::safetensors::load(argv[1]);
    const auto b = bnorm::safetensors::load(argv[2]);
    if (a.tensors.size() != b.tensors.size()) {
      std::fprintf(stderr, "%zu vs %zu tensors\n", a.tensors.size(), b.tensors.size());
      return 1;
    }
    int bad = 0;
    std::size_t compared = 0;
    double worst_relative = 0;
    for (const auto& [name, ta] : a.tensors) {
      const auto& tb = b.expect(name, ta.dtype, ta.shape);
      if (ta.dtype != bnorm::safetensors::Dtype::kF32) {
        if (ta.data != tb.data) {
          std::fprintf(stderr, "%s (%s) differs\n", name.c_str(),
                       std::string(bnorm::safetensors::dtype_name(ta.dtype)).c_str());
          ++bad;
        }
        continue;
      }
      const auto va = ta.values<float>(name);
      const auto vb = tb.values<float>(name);
      double difference = 0, magnitude = 0;
      for (std::size_t i = 0; i < va.size(); ++i) {
        const double d = std::fabs(double(va[i]) - vb[i]);
        difference = std::max(difference, std::isnan(d) ? INFINITY : d);
        magnitude = std::max(magnitude, std::fabs(double(vb[i])));
      }
      compared += va.size();
      const double relative = magnitude > 0 ? difference / magnitude : difference;
      worst_relative = std::max(worst_relative, relative);
      if (!(relative <= rtol)) {
        std::fprintf(stderr, "%s: max |a - b| / max |b| = %g > %g\n", name.c_str(), relative, rtol);
        ++bad;
      }
    }
    std::printf(
        "%zu float values in %zu tensors compared; worst max|a-b|/max|b| %.3g; %d exceed %g\n",
        compared, a.tensors.size(), worst_relative, bad, rtol);
    return bad == 0 && compared > 0 ? 0 : 1;
  } catch (const bnorm::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
}
