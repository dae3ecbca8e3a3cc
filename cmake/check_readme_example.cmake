# Fails unless README.md contains the example file verbatim (so the README's code is the code that
# CTest builds and runs). Usage: cmake -DREADME=... -DEXAMPLE=... -P check_readme_example.cmake
file(READ "${README}" readme)
file(READ "${EXAMPLE}" example)
string(FIND "${readme}" "${example}" found)
if(found EQUAL -1)
  message(FATAL_ERROR "README.md does not contain ${EXAMPLE} verbatim: update the README's example")
endif()
