// Progress reporting: a live bar on a terminal, periodic plain lines otherwise.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include "options.hpp"

namespace bnorm::train {

class Progress {
 public:
  // kAuto becomes kBar when stdout is a terminal (and TERM is not "dumb"), kLines otherwise.
  explicit Progress(ProgressMode mode, std::FILE* out = stdout);

  void start(const std::string& run, std::int64_t first_step, std::int64_t total_steps);
  // After each step (the bar redraws at most 10 times a second).
  void step(std::int64_t step, double loss, double steps_per_second);
  // After each evaluation: a plain line in kLines mode; the bar shows the new accuracy.
  void evaluated(std::int64_t step, double train_loss, double accuracy, double steps_per_second);
  void finish();

 private:
  void draw(std::int64_t step, double steps_per_second);
  ProgressMode mode_;
  std::FILE* out_;
  std::string run_;
  std::int64_t total_ = 0;
  double loss_ = 0, accuracy_ = 0;
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace bnorm::train
