// Mean and spread over seeds.
#include "seeds.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "bnorm/io.hpp"

namespace bnorm::train {

Spread spread_of(const std::vector<double>& values) {
  Spread s;
  s.n = values.size();
  if (values.empty()) return s;
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / static_cast<double>(s.n);
  double sq = 0;
  for (double v : values) sq += (v - s.mean) * (v - s.mean);
  s.std = s.n > 1 ? std::sqrt(sq / static_cast<double>(s.n - 1)) : 0.0;
  s.min = *std::min_element(values.begin(), values.end());
  s.max = *std::max_element(values.begin(), values.end());
  return s;
}

std::string format_spread(const Spread& s, int precision) {
  if (s.n <= 1) return fmt::format("{:.{}f}", s.mean, precision);
  return fmt::format("{:.{}f} ± {:.{}f}", s.mean, precision, s.std, precision);
}

namespace {

template <class F>
Spread over_runs(const std::vector<RunResult>& runs, F value) {
  std::vector<double> v;
  for (const auto& r : runs) v.push_back(value(r));
  return spread_of(v);
}

}  // namespace

Spread SeedGroup::final_accuracy() const {
  return over_runs(runs, [](const RunResult& r) { return r.last().test_accuracy; });
}
Spread SeedGroup::final_test_loss() const {
  return over_runs(runs, [](const RunResult& r) { return r.last().test_loss; });
}
Spread SeedGroup::best_accuracy() const {
  return over_runs(runs, [](const RunResult& r) { return r.best_accuracy(); });
}

bool write_mean_csv(const std::filesystem::path& path, const SeedGroup& group) {
  if (group.runs.empty()) return false;
  const std::size_t rows = group.runs.front().log.size();
  for (const auto& r : group.runs) {
    if (r.log.size() != rows) return false;
  }
  std::vector<LogRow> mean(rows);
  const auto k = static_cast<double>(group.runs.size());
  for (std::size_t i = 0; i < rows; ++i) {
    LogRow& m = mean[i];
    m.step = group.runs.front().log[i].step;
    for (const auto& r : group.runs) {
      const LogRow& row = r.log[i];
      if (row.step != m.step) return false;
      m.train_loss += row.train_loss / k;
      m.test_accuracy += row.test_accuracy / k;
      m.p15 += row.p15 / k;
      m.p50 += row.p50 / k;
      m.p85 += row.p85 / k;
      m.test_loss += row.test_loss / k;
    }
  }
  write_file_atomically(path, format_csv(mean));
  return true;
}

}  // namespace bnorm::train
