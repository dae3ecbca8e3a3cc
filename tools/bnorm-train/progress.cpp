// Progress: "\r" redraws on a terminal; one line per evaluation in logs.
#include "progress.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <string_view>

#include <fmt/format.h>

namespace bnorm::train {
namespace {

std::string eta(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const auto s = static_cast<std::int64_t>(seconds + 0.5);
  return s >= 3600 ? fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
                   : fmt::format("{}:{:02}", s / 60, s % 60);
}

}  // namespace

Progress::Progress(ProgressMode mode, std::FILE* out) : mode_(mode), out_(out) {
  if (mode_ == ProgressMode::kAuto) {
    const char* term = std::getenv("TERM");
    const bool tty =
        ::isatty(::fileno(out)) != 0 && (term == nullptr || std::string_view(term) != "dumb");
    mode_ = tty ? ProgressMode::kBar : ProgressMode::kLines;
  }
}

void Progress::start(const std::string& run, std::int64_t first_step, std::int64_t total_steps) {
  run_ = run;
  total_ = total_steps;
  if (mode_ == ProgressMode::kLines) {
    fmt::print(out_, "[{}] training from step {} to {}\n", run_, first_step, total_steps);
    std::fflush(out_);
  }
}

void Progress::draw(std::int64_t step, double steps_per_second) {
  constexpr int kWidth = 24;
  const double frac = total_ > 0 ? static_cast<double>(step) / static_cast<double>(total_) : 1.0;
  const int filled = static_cast<int>(frac * kWidth);
  fmt::print(
      out_,
      "\r[{}] [{:<{}}] {:>3.0f}% step {}/{} loss {:.4f} acc {:.4f} {:.0f} steps/s ETA {}\x1b[K",
      run_, std::string(static_cast<std::size_t>(filled), '#'), kWidth, 100 * frac, step, total_,
      loss_, accuracy_, steps_per_second,
      eta(static_cast<double>(total_ - step) / steps_per_second));
  std::fflush(out_);
  last_draw_ = std::chrono::steady_clock::now();
}

void Progress::step(std::int64_t step, double loss, double steps_per_second) {
  loss_ = loss;
  if (mode_ != ProgressMode::kBar) return;
  if (std::chrono::steady_clock::now() - last_draw_ < std::chrono::milliseconds(100) &&
      step != total_)
    return;
  draw(step, steps_per_second);
}

void Progress::evaluated(std::int64_t step, double train_loss, double accuracy,
                         double steps_per_second) {
  accuracy_ = accuracy;
  if (mode_ == ProgressMode::kBar) {
    draw(step, steps_per_second);
  } else if (mode_ == ProgressMode::kLines) {
    fmt::print(out_, "[{}] step {}/{} train loss {:.4f} test acc {:.4f} {:.0f} steps/s ETA {}\n",
               run_, step, total_, train_loss, accuracy, steps_per_second,
               eta(static_cast<double>(total_ - step) / steps_per_second));
    std::fflush(out_);
  }
}

void Progress::finish() {
  if (mode_ == ProgressMode::kBar) {
    fmt::print(out_, "\n");
    std::fflush(out_);
  }
}

}  // namespace bnorm::train
