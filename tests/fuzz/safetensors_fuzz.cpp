// Fuzz target: the safetensors parser (bnorm::safetensors::parse), which reads untrusted files.
//
// Contract checked on every input:
//   - parse either returns a File or throws bnorm::Error; anything else (a crash, a sanitizer
//     report, another exception type) is a finding;
//   - what parse accepts is self-consistent: every tensor's byte count equals numel * dtype size,
//     and serialize -> parse gives back the same metadata, names, dtypes, shapes and bytes;
//   - parse time is linear in the input: at most kBaseBudget + kPerByteBudget * size of this
//     thread's CPU time (CPU, not wall time: other processes do not count). The budget
//     is 10-20x what the parser needs under ASan+UBSan per byte, plus 100 ms, and an input over
//     it is timed twice more (the fastest run counts) so that noise cannot fail it; the quadratic
//     duplicate-key check of issue 13 (8 us per byte at 40,000 entries, growing with the count)
//     or a rescan per entry breaks it.
#include <time.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <utility>
#include <vector>

#include "bnorm/error.hpp"
#include "bnorm/safetensors.hpp"

namespace {

namespace st = bnorm::safetensors;

// A broken property of an accepted file: abort, so that libFuzzer (or replay) reports the input.
void require(bool property) {
  if (!property) std::abort();
}

constexpr double kBaseBudget = 0.1;      // seconds
constexpr double kPerByteBudget = 2e-6;  // seconds per input byte (500 KB/s)

double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

void check_round_trip(const st::File& file) {
  std::vector<st::TensorRef> refs;
  for (const auto& [name, tensor] : file.tensors) {
    require(tensor.numel() >= 0);
    require(tensor.data.size() ==
            static_cast<std::uint64_t>(tensor.numel()) * st::dtype_size(tensor.dtype));
    refs.push_back({name, tensor.dtype, tensor.shape, tensor.data});
  }
  const std::vector<std::byte> bytes = st::serialize(refs, file.metadata);
  const st::File again = st::parse(bytes, "round trip");
  require(again.metadata == file.metadata);
  require(again.tensors.size() == file.tensors.size());
  for (const auto& [name, tensor] : file.tensors) {
    const auto it = again.tensors.find(name);
    require(it != again.tensors.end());
    require(it->second.dtype == tensor.dtype && it->second.shape == tensor.shape &&
            it->second.data == tensor.data);
  }
}

}  // namespace

// Parses the input; returns whether it was accepted and the thread CPU seconds it took.
std::pair<bool, double> timed_parse(const std::uint8_t* data, std::size_t size, st::File& file) {
  const double start = thread_cpu_seconds();
  bool accepted = true;
  try {
    file = st::parse(std::as_bytes(std::span(data, size)), "fuzz input");
  } catch (const bnorm::Error&) {
    accepted = false;  // rejected with a message: the expected outcome for most inputs
  }
  return {accepted, thread_cpu_seconds() - start};
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  st::File file;
  auto [accepted, seconds] = timed_parse(data, size, file);
  // Over budget: time it twice more and keep the fastest. A slow parse is slow every time; a
  // one-off spike (a virtual machine's stolen time is counted as the thread's; ASan draining its
  // quarantine) is not. Found necessary: one spurious report in ~94,000 runs on the shared VM.
  const double budget = kBaseBudget + kPerByteBudget * static_cast<double>(size);
  for (int retry = 0; retry < 2 && seconds > budget; ++retry) {
    st::File again;
    seconds = std::min(seconds, timed_parse(data, size, again).second);
  }
  require(seconds <= budget);
  if (!accepted) return 0;
  check_round_trip(file);  // outside the try: an accepted file must round-trip without throwing
  return 0;
}
