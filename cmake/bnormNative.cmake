# bnorm_native(target): -march=native for the training engine and the tools when BNORM_NATIVE
# is on and the compiler takes it. Never applied to the bnorm library (runtime dispatch).
include(CheckCXXCompilerFlag)
check_cxx_compiler_flag(-march=native BNORM_COMPILER_HAS_MARCH_NATIVE)
function(bnorm_native target)
  if(BNORM_NATIVE AND BNORM_COMPILER_HAS_MARCH_NATIVE)
    target_compile_options(${target} PRIVATE -march=native)
    # GCC 12's own AVX-512 intrinsics headers warn "__Y may be used uninitialized" (at -O2 and
    # above) or "__Y is used uninitialized" (at -O1, the sanitizer builds) when Eigen
    # instantiates them (GCC bug 105593): a false positive in the compiler's headers.
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
      target_compile_options(${target} PRIVATE -Wno-maybe-uninitialized -Wno-uninitialized)
    endif()
  endif()
endfunction()
