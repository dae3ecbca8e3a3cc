// bnorm::Error: the one exception type a user of bnorm can cause.
#pragma once

#include <stdexcept>
#include <string>

namespace bnorm {

// Thrown for every invalid argument, option or file. The message names the argument,
// the value it had and what was expected, so that it can be acted on without a debugger.
class Error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

}  // namespace bnorm
