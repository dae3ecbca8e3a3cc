// One dispatch helper for the storage types of the SIMD kernels (host side: include after
// <hwy/highway.h>, in a family's HWY_ONCE section).
//
// Highway exports only non-template functions, so each per-target template has one entry point
// per storage type, named with the type's suffix (CfNormalizeRowsF, CfNormalizeRowsD).
// BNORM_SIMD_STORAGE_TYPES lists the types once; BNORM_SIMD_EXPORT(Name) exports Name<suffix> for
// each of them and defines Name<T>(), the best target's entry point for storage type T:
//
//   CfNormalizeRows<T>()(x, y, g, rows, k, e, stream);
//
// Adding a storage type is one line here and one instantiation per family (its
// BNORM_SIMD_STORAGE_TYPES(BNORM_CF_ENTRY_POINTS) list picks it up): no call site changes.
#pragma once

#include <hwy/highway.h>

#include <type_traits>

// X(T, suffix, extra) for every storage type.
#define BNORM_SIMD_STORAGE_TYPES(X, extra) X(float, F, extra) X(double, D, extra)

#define BNORM_SIMD_EXPORT_ONE(T, S, Name) HWY_EXPORT(Name##S);
#define BNORM_SIMD_DISPATCH_ONE(T, S, Name)   \
  if constexpr (std::is_same_v<Storage, T>) { \
    return &HWY_DYNAMIC_DISPATCH(Name##S);    \
  } else

#define BNORM_SIMD_EXPORT(Name)                                                         \
  BNORM_SIMD_STORAGE_TYPES(BNORM_SIMD_EXPORT_ONE, Name)                                 \
  template <class Storage>                                                              \
  auto Name() {                                                                         \
    BNORM_SIMD_STORAGE_TYPES(BNORM_SIMD_DISPATCH_ONE, Name) {                           \
      static_assert(sizeof(Storage) == 0, "no SIMD entry point for this storage type"); \
    }                                                                                   \
  }
