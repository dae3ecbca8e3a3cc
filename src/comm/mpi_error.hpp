// MPI return codes as bnorm::Error: internal to the MPI communicator (and its tests).
#pragma once

#include <fmt/format.h>
#include <mpi.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "bnorm/error.hpp"

namespace bnorm::mpi_detail {

// The text MPI gives for an error code, e.g. "MPI_ERR_TRUNCATE: message truncated".
inline std::string error_string(int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) {
    return fmt::format("unknown MPI error {}", code);
  }
  return std::string(text, static_cast<std::size_t>(length));
}

// Throws bnorm::Error naming the bnorm function, the MPI call and MPI's error string unless
// code is MPI_SUCCESS. Requires: the communicator's error handler returns errors
// (MPI_ERRORS_RETURN); with MPI's default handler a failing call aborts before this is reached.
inline void check(int code, std::string_view fn, std::string_view mpi_call) {
  if (code == MPI_SUCCESS) return;
  throw Error(
      fmt::format("{}: {} failed: {} (MPI error code {})", fn, mpi_call, error_string(code), code));
}

}  // namespace bnorm::mpi_detail
