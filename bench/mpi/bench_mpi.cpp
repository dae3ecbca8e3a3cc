// bnorm-bench-mpi: what synchronizing batch norm across ranks costs per training step.
//
// For each channel count C, every rank runs a training step (forward_training + backward) on its
// own batch, unsynchronized and synchronized over MPI_COMM_WORLD, and the bare collectives of the
// same size: MPI_Allreduce of 3C doubles (the forward's per-rank payload, the larger of the two;
// the backward's is 2C + 1) and MPI_Allgather of 3C doubles (what the forward does). Repetitions
// interleave the measurements so that drift hits all alike; a repetition's time is the slowest
// rank's, and the table shows the fastest repetition of each (the lower envelope: on a shared
// machine medians measure the neighbours, minima the code):
//   added = sync - unsync,   ratio = sync / unsync,   target: added < 2 x allreduce
// plus "both collectives": MPI_Allgather(3C) + MPI_Allreduce(2C + 1) back to back, the
// communication a synchronized step does, so that added - both = merging and waiting for the
// slowest rank.
// Rank 0 prints one Markdown table row per C (scripts/bench-mpi assembles docs/benchmarks-mpi.md).
//   mpiexec -n 4 bnorm-bench-mpi --channels 64,256,1024,2048 --batch 8 --spatial 8
#include <fmt/format.h>
#include <mpi.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <bnorm/bnorm.hpp>
#include <bnorm/mpi.hpp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace {

struct Options {
  std::vector<std::int64_t> channels{64, 256, 1024, 2048};
  std::int64_t batch = 8;             // samples per rank
  std::int64_t spatial = 8;           // H = W
  int repetitions = 101;              // timed repetitions per measurement
  double repetition_seconds = 0.002;  // target duration of one repetition (sets the inner count)
  bool no_header = false;
};

// One training step on this rank's batch, synchronized when comm is given.
struct Step {
  bnorm::Geometry g;
  std::vector<float> x, y, dy, dx, gamma, beta, mean, variance, dgamma, dbeta;

  Step(std::int64_t batch, std::int64_t channels, std::int64_t spatial, int rank) {
    const std::int64_t shape[] = {batch, channels, spatial, spatial};
    g = bnorm::geometry_of(shape, 1);
    const auto n = static_cast<std::size_t>(g.size());
    const auto C = static_cast<std::size_t>(channels);
    x.resize(n);
    y.resize(n);
    dy.resize(n);
    dx.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      x[i] = std::sin(0.37f * static_cast<float>(i % 1021) + static_cast<float>(rank)) * 2 + 3;
      dy[i] = std::cos(0.11f * static_cast<float>(i % 997)) * 0.5f;
    }
    gamma.assign(C, 1.0f);
    beta.assign(C, 0.0f);
    mean.resize(C);
    variance.resize(C);
    dgamma.resize(C);
    dbeta.resize(C);
  }

  void run(const bnorm::Communicator* comm) {
    constexpr float eps = 1e-5f;
    if (comm != nullptr) {
      bnorm::forward_training(x, y, g, gamma, beta, eps, mean, variance, *comm);
      bnorm::backward(x, dy, g, gamma, mean, variance, eps, dx, dgamma, dbeta, *comm);
    } else {
      bnorm::forward_training(x, y, g, gamma, beta, eps, mean, variance);
      bnorm::backward(x, dy, g, gamma, mean, variance, eps, dx, dgamma, dbeta);
    }
  }
};

double now() {
  return MPI_Wtime();
}

// Seconds per call of f, averaged over `inner` calls, as seen by the slowest rank.
template <class F>
double time_per_call(MPI_Comm comm, int inner, F&& f) {
  MPI_Barrier(comm);
  const double start = now();
  for (int k = 0; k < inner; ++k) f();
  double local = (now() - start) / inner;
  double slowest = 0;
  MPI_Allreduce(&local, &slowest, 1, MPI_DOUBLE, MPI_MAX, comm);
  return slowest;
}

// Calls per repetition so that one repetition lasts about `seconds` (agreed by all ranks).
template <class F>
int calibrate(MPI_Comm comm, double seconds, F&& f) {
  for (int k = 0; k < 3; ++k) f();  // warm up: scratch memory, caches, MPI connections
  const double once = time_per_call(comm, 5, f);
  double inner = std::clamp(std::ceil(seconds / std::max(once, 1e-9)), 1.0, 100000.0);
  MPI_Bcast(&inner, 1, MPI_DOUBLE, 0, comm);
  return static_cast<int>(inner);
}

std::string microseconds(double seconds) {
  return fmt::format("{:.1f}", seconds * 1e6);
}

}  // namespace

int main(int argc, char** argv) {
  const bnorm::MpiSession session(argc, argv);
  Options o;
  CLI::App app{"bnorm-bench-mpi: the cost of synchronized batch norm per training step"};
  app.add_option("--channels", o.channels, "channel counts C")->delimiter(',');
  app.add_option("--batch", o.batch, "samples per rank (N of the NCHW batch)");
  app.add_option("--spatial", o.spatial, "H = W of the NCHW batch");
  app.add_option("--repetitions", o.repetitions, "timed repetitions per measurement");
  app.add_option("--repetition-seconds", o.repetition_seconds, "duration of one repetition");
  app.add_flag("--no-header", o.no_header, "omit the table header");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  const bnorm::MpiCommunicator comm(MPI_COMM_WORLD);
  const MPI_Comm mpi = comm.comm();
  if (comm.rank() == 0 && !o.no_header) {
    std::printf(
        "| ranks | C | per-rank batch (NCHW) | step, unsync (us) | step, sync (us) | added (us) "
        "| ratio | MPI_Allreduce 3C (us) | MPI_Allgather 3C (us) | both collectives of a step (us) "
        "| added / allreduce |\n");
    std::printf("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  }
  for (const std::int64_t C : o.channels) {
    Step step(o.batch, C, o.spatial, comm.rank());
    const auto payload_size = static_cast<std::size_t>(3 * C);
    std::vector<double> payload(payload_size, 1.0);
    std::vector<double> gathered(payload_size * static_cast<std::size_t>(comm.size()));
    const auto allreduce = [&] {
      MPI_Allreduce(MPI_IN_PLACE, payload.data(), static_cast<int>(payload_size), MPI_DOUBLE,
                    MPI_SUM, mpi);
    };
    const auto allgather = [&] {
      MPI_Allgather(payload.data(), static_cast<int>(payload_size), MPI_DOUBLE, gathered.data(),
                    static_cast<int>(payload_size), MPI_DOUBLE, mpi);
    };
    // The communication of one synchronized step alone: what forward_training and backward send.
    std::vector<double> backward_payload(static_cast<std::size_t>(2 * C + 1), 1.0);
    const auto collectives = [&] {
      allgather();
      MPI_Allreduce(MPI_IN_PLACE, backward_payload.data(),
                    static_cast<int>(backward_payload.size()), MPI_DOUBLE, MPI_SUM, mpi);
    };
    const auto unsync = [&] { step.run(nullptr); };
    const auto sync = [&] { step.run(&comm); };
    const int inner_step = calibrate(mpi, o.repetition_seconds, sync);
    const int inner_collective = calibrate(mpi, o.repetition_seconds / 4, allreduce);
    calibrate(mpi, 0, unsync);
    calibrate(mpi, 0, allgather);
    calibrate(mpi, 0, collectives);

    double t_unsync = INFINITY;
    double t_sync = INFINITY;
    double t_allreduce = INFINITY;
    double t_allgather = INFINITY;
    double t_collectives = INFINITY;
    for (int r = 0; r < o.repetitions; ++r) {
      t_unsync = std::min(t_unsync, time_per_call(mpi, inner_step, unsync));
      t_sync = std::min(t_sync, time_per_call(mpi, inner_step, sync));
      t_allreduce = std::min(t_allreduce, time_per_call(mpi, inner_collective, allreduce));
      t_allgather = std::min(t_allgather, time_per_call(mpi, inner_collective, allgather));
      t_collectives = std::min(t_collectives, time_per_call(mpi, inner_collective, collectives));
    }
    if (comm.rank() == 0) {
      const double added = t_sync - t_unsync;
      std::printf(
          "| %d | %lld | %lldx%lldx%lldx%lld | %s | %s | %s | %.3f | %s | %s | %s | %.2f |\n",
          comm.size(), static_cast<long long>(C), static_cast<long long>(o.batch),
          static_cast<long long>(C), static_cast<long long>(o.spatial),
          static_cast<long long>(o.spatial), microseconds(t_unsync).c_str(),
          microseconds(t_sync).c_str(), microseconds(added).c_str(), t_sync / t_unsync,
          microseconds(t_allreduce).c_str(), microseconds(t_allgather).c_str(),
          microseconds(t_collectives).c_str(), added / t_allreduce);
      std::fflush(stdout);
    }
  }
  return 0;
}
