// Plots: a gnuplot script per figure, kept next to the PNG so that a user can restyle it.
#include "plots.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

#include "bnorm/io.hpp"

namespace bnorm::train {
namespace {

namespace fs = std::filesystem;

// gnuplot single-quoted strings: a quote is written twice.
std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

std::string preamble(const std::string& png_tmp, const std::string& title) {
  return fmt::format(
      "set terminal pngcairo size 960,600 font ',11' noenhanced\n"
      "set output {}\n"
      "set datafile separator ','\n"
      "set key autotitle columnhead\n"
      "set title {}\n"
      "set grid\n"
      "set xlabel 'training step'\n",
      quoted(png_tmp), quoted(title));
}

bool render(const fs::path& dir, const std::string& stem, const std::string& script) {
  const std::string gp = stem + ".gp";
  const std::string png = stem + ".png";
  const std::string tmp = stem + ".png.tmp";
  write_file_atomically(dir / gp, script);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::chdir(dir.c_str()) != 0) ::_exit(126);
    ::execlp("gnuplot", "gnuplot", gp.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::error_code ec;
    fs::remove(dir / tmp, ec);
    const bool missing = pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 127;
    fmt::print(stderr, "bnorm-train: note: {} not written ({}); the data is in the CSV files\n",
               (dir / png).string(),
               missing ? "gnuplot not found: apt-get install gnuplot-nox" : "gnuplot failed");
    return false;
  }
  fs::rename(dir / tmp, dir / png);
  return true;
}

}  // namespace

bool plot_accuracy(const fs::path& dir, const std::string& stem,
                   const std::vector<PlotSeries>& runs) {
  std::string script = preamble(stem + ".png.tmp", "Fashion-MNIST test accuracy");
  script += "set ylabel 'test accuracy'\nset yrange [0:1]\nset key center right box opaque\nplot ";
  for (std::size_t i = 0; i < runs.size(); ++i) {
    script += fmt::format("{}{} using 1:3 with lines lw 2 title {}", i == 0 ? "" : ", \\\n     ",
                          quoted(runs[i].csv.string()), quoted(runs[i].title));
  }
  script += "\n";
  return render(dir, stem, script);
}

bool plot_percentiles(const fs::path& dir, const std::string& stem, const PlotSeries& run) {
  std::string script = preamble(
      stem + ".png.tmp",
      "Input to a last-hidden-layer activation: 15/50/85th percentiles (" + run.title + ")");
  const std::string csv = quoted(run.csv.string());
  script += "set ylabel 'activation input'\nset key top right\n";
  script += fmt::format(
      "plot {0} using 1:4:6 with filledcurves fs transparent solid 0.25 noborder lc rgb '#3060c0' "
      "title 'p15-p85', \\\n"
      "     {0} using 1:4 with lines lw 1 lc rgb '#3060c0' title 'p15', \\\n"
      "     {0} using 1:5 with lines lw 2 lc rgb '#102060' title 'p50', \\\n"
      "     {0} using 1:6 with lines lw 1 lc rgb '#3060c0' title 'p85'\n",
      csv);
  return render(dir, stem, script);
}

}  // namespace bnorm::train
