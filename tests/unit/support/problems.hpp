// Problem lists (tests/problems/*.txt): shapes and channel axes shared by tests and benchmarks.
// Format, one problem per line:  <d0>x<d1>x...  <axis>   [# comment]
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "bnorm/geometry.hpp"

namespace bnorm::test {

struct Problem {
  std::vector<std::int64_t> shape;
  int axis = 1;
  [[nodiscard]] Geometry geometry() const { return geometry_of(shape, axis); }
  [[nodiscard]] std::string name() const {
    return fmt::format("{}_axis{}", fmt::join(shape, "x"),
                       axis < 0 ? "m" + std::to_string(-axis) : std::to_string(axis));
  }
};

inline std::vector<Problem> load_problems(const std::string& file) {
  const std::string path = std::string(BNORM_PROBLEMS_DIR) + "/" + file;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open problem list " + path);
  std::vector<Problem> problems;
  std::string line;
  while (std::getline(in, line)) {
    if (const auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream fields(line);
    std::string shape;
    Problem p;
    if (!(fields >> shape)) continue;
    if (!(fields >> p.axis)) throw std::runtime_error("no axis in line '" + line + "' of " + path);
    std::istringstream dims(shape);
    std::string dim;
    while (std::getline(dims, dim, 'x')) p.shape.push_back(std::stoll(dim));
    problems.push_back(p);
  }
  return problems;
}

}  // namespace bnorm::test
