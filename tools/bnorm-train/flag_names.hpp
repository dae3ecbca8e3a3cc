// The engine names its own fields in error messages (e.g. "SgdOptions::momentum"); the command
// line speaks in flags. This maps one vocabulary to the other.
#pragma once

#include <string>

namespace bnorm::train {

// `message` with every engine field name that a flag sets replaced by that flag
// ("SgdOptions::momentum 1" -> "--momentum 1").
[[nodiscard]] std::string in_flag_terms(std::string message);

}  // namespace bnorm::train
