// The README's synchronized example: every process holds its own slice of one global batch, and
// batch norm uses the statistics of the whole batch (one collective forward, one backward).
//   mpiexec -n 4 build/examples/example_synchronized
#include <bnorm/bnorm.hpp>
#include <bnorm/mpi.hpp>  // MpiCommunicator, MpiSession: only when bnorm was built with MPI

#include <cmath>
#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
  const bnorm::MpiSession mpi(argc, argv);            // MPI_Init/MPI_Finalize (skip if you own MPI)
  const bnorm::MpiCommunicator comm(MPI_COMM_WORLD);  // or any sub-communicator

  // Rank r holds 2 + r images of 3 channels of 5x5 pixels (NCHW): uneven slices are fine.
  const std::int64_t shape[] = {2 + comm.rank(), 3, 5, 5};
  const bnorm::Geometry g = bnorm::geometry_of(shape, /*axis=*/1);
  std::vector<float> x(g.size()), y(g.size());
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.1f * i + comm.rank()) * 3 + 1;
  std::vector<float> gamma(g.channels, 1.0f), beta(g.channels, 0.0f);
  std::vector<float> mean(g.channels), variance(g.channels);

  // Training forward with the statistics of every rank's batch: identical on every rank.
  bnorm::forward_training(x, y, g, gamma, beta, 1e-5f, mean, variance, comm);

  // Backward: dgamma and dbeta are the sums over the global batch, identical on every rank.
  std::vector<float> dy(g.size(), 0.5f), dx(g.size()), dgamma(g.channels), dbeta(g.channels);
  bnorm::backward(x, dy, g, gamma, mean, variance, 1e-5f, dx, dgamma, dbeta, comm);

  // Every rank prints the same statistics; dbeta = 0.5 x (all images) x 25 pixels.
  std::int64_t images = 0;
  for (int r = 0; r < comm.size(); ++r) images += 2 + r;
  std::printf("rank %d of %d: channel 0 mean %.6f variance %.6f, dbeta %.1f\n", comm.rank(),
              comm.size(), mean[0], variance[0], dbeta[0]);
  return dbeta[0] == 0.5f * static_cast<float>(images * 25) && std::isfinite(y[0]) ? 0 : 1;
}
