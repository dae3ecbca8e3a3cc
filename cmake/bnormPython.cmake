# Finds what the Python package needs and defines the options:
#   BNORM_WITH_PYTHON     the bnorm package (pybind11 + NumPy); default ON when pybind11, the
#                         Python development files and NumPy are found for BNORM_PYTHON_EXECUTABLE
#   BNORM_WITH_TORCH_OPS  its PyTorch operator (a C++ extension); default ON when that Python's
#                         torch ships its C++ headers and libraries (Debian: python3-torch and
#                         libtorch-dev)
# Debian's python3-numpy, pybind11-dev and python3-torch belong to /usr/bin/python3; a python3
# found first on PATH may be another installation that sees none of them.
set(BNORM_PYTHON_EXECUTABLE "/usr/bin/python3" CACHE FILEPATH
    "The Python interpreter the bnorm package is built for")

set(_bnorm_python_default OFF)
if(EXISTS "${BNORM_PYTHON_EXECUTABLE}")
  set(Python_EXECUTABLE "${BNORM_PYTHON_EXECUTABLE}")
  find_package(Python 3 QUIET COMPONENTS Interpreter Development.Module NumPy)
  if(Python_FOUND AND Python_NumPy_FOUND)
    set(PYBIND11_FINDPYTHON ON)
    find_package(pybind11 CONFIG QUIET)
    if(pybind11_FOUND)
      set(_bnorm_python_default ON)
    endif()
  endif()
endif()
option(BNORM_WITH_PYTHON "Build the bnorm Python package (pybind11, NumPy)" ${_bnorm_python_default})

if(NOT BNORM_WITH_PYTHON)
  set(BNORM_WITH_TORCH_OPS OFF)
  return()
endif()
if(NOT _bnorm_python_default)
  message(FATAL_ERROR "BNORM_WITH_PYTHON=ON needs pybind11 (pybind11-dev), the Python development "
                      "files (python3-dev) and NumPy (python3-numpy) for ${BNORM_PYTHON_EXECUTABLE}")
endif()

# torch: ask the interpreter where its C++ API is (torch.utils.cpp_extension, as torch's own
# extension builder does), and which libstdc++ ABI and version it was built with.
set(_bnorm_torch_default OFF)
execute_process(
  COMMAND "${Python_EXECUTABLE}" -c
    "import torch, torch.utils.cpp_extension as c; print(';'.join(c.include_paths())); print(c.library_paths()[0]); print(int(torch._C._GLIBCXX_USE_CXX11_ABI)); print(torch.__version__)"
  RESULT_VARIABLE _bnorm_torch_rc OUTPUT_VARIABLE _bnorm_torch_out ERROR_QUIET
  OUTPUT_STRIP_TRAILING_WHITESPACE)
if(_bnorm_torch_rc EQUAL 0)
  string(REPLACE "\n" ";" _bnorm_torch_lines "${_bnorm_torch_out}")
  list(LENGTH _bnorm_torch_lines _n)
  if(_n EQUAL 4 OR _n GREATER 4)
    list(POP_BACK _bnorm_torch_lines BNORM_TORCH_VERSION)
    list(POP_BACK _bnorm_torch_lines BNORM_TORCH_CXX11_ABI)
    list(POP_BACK _bnorm_torch_lines BNORM_TORCH_LIBRARY_DIR)
    set(BNORM_TORCH_INCLUDE_DIRS ${_bnorm_torch_lines})
    set(BNORM_TORCH_LIBRARIES)
    foreach(lib torch_python torch torch_cpu c10)
      find_library(BNORM_TORCH_LIB_${lib} ${lib} PATHS "${BNORM_TORCH_LIBRARY_DIR}" NO_DEFAULT_PATH)
      if(BNORM_TORCH_LIB_${lib})
        list(APPEND BNORM_TORCH_LIBRARIES "${BNORM_TORCH_LIB_${lib}}")
      endif()
    endforeach()
    list(GET BNORM_TORCH_INCLUDE_DIRS 0 _bnorm_torch_include)
    list(LENGTH BNORM_TORCH_LIBRARIES _nlibs)
    if(_nlibs EQUAL 4 AND EXISTS "${_bnorm_torch_include}/torch/extension.h")
      set(_bnorm_torch_default ON)
    endif()
  endif()
endif()
option(BNORM_WITH_TORCH_OPS "Build the PyTorch operator of the Python package (torch.ops.bnorm)"
       ${_bnorm_torch_default})
if(BNORM_WITH_TORCH_OPS AND NOT _bnorm_torch_default)
  message(FATAL_ERROR "BNORM_WITH_TORCH_OPS=ON needs torch with its C++ headers for "
                      "${Python_EXECUTABLE} (Debian: python3-torch libtorch-dev)")
endif()
message(STATUS "bnorm Python package: ON (${Python_EXECUTABLE}, NumPy ${Python_NumPy_VERSION}); "
               "PyTorch operator: ${BNORM_WITH_TORCH_OPS} ${BNORM_TORCH_VERSION}")
