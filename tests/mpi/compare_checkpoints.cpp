// compare_checkpoints A B: every tensor of two safetensors files (same names, dtypes, shapes)
// agrees within fp32 tolerances |a - b| <= atol + rtol * |b| (rtol 1e-4, atol 1e-5 by default;
// 200 training steps amplify last-bit differences of the summation order between 1 and N ranks).
// Exit 0 when they agree, 1 with the worst tensor otherwise.
#include <bnorm/error.hpp>
#include <bnorm/safetensors.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: compare_checkpoints A B [rtol] [atol]\n");
    return 2;
  }
  const double rtol = argc > 3 ? std::atof(argv[3]) : 1e-4;
  const double atol = argc > 4 ? std::atof(argv[4]) : 1e-5;
  try {
    const auto a = bnorm::safetensors::load(argv[1]);
    const auto b = bnorm::safetensors::load(argv[2]);
    if (a.tensors.size() != b.tensors.size()) {
      std::fprintf(stderr, "%zu vs %zu tensors\n", a.tensors.size(), b.tensors.size());
      return 1;
    }
    int bad = 0;
    std::size_t compared = 0;
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
      double worst = 0;
      for (std::size_t i = 0; i < va.size(); ++i) {
        const double excess = std::fabs(double(va[i]) - vb[i]) - (atol + rtol * std::fabs(vb[i]));
        worst = std::max(worst, std::isnan(excess) ? INFINITY : excess);
      }
      compared += va.size();
      if (worst > 0) {
        std::fprintf(stderr, "%s exceeds the tolerance by %g\n", name.c_str(), worst);
        ++bad;
      }
    }
    std::printf("%zu float values in %zu tensors compared; %d differ\n", compared,
                a.tensors.size(), bad);
    return bad == 0 && compared > 0 ? 0 : 1;
  } catch (const bnorm::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
}
