// bnorm never initializes MPI behind the caller's back: constructing an MpiCommunicator before
// MPI_Init is a bnorm::Error that says so, and MPI is still uninitialized afterwards.
// Runs without mpiexec (no MPI_Init anywhere in this program).
#include <mpi.h>

#include <bnorm/error.hpp>
#include <bnorm/mpi.hpp>
#include <cstdio>
#include <string>

int main() {
  try {
    const bnorm::MpiCommunicator comm(MPI_COMM_WORLD);
    std::fprintf(stderr, "FAIL: no error before MPI_Init\n");
    return 1;
  } catch (const bnorm::Error& e) {
    if (std::string(e.what()).find("MPI is not initialized") == std::string::npos) {
      std::fprintf(stderr, "FAIL: unexpected message: %s\n", e.what());
      return 1;
    }
    std::printf("ok: %s\n", e.what());
  }
  int initialized = 1;
  MPI_Initialized(&initialized);
  if (initialized != 0) {
    std::fprintf(stderr, "FAIL: MPI was initialized by bnorm\n");
    return 1;
  }
  return 0;
}
