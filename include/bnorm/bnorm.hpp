// bnorm: batch normalization for C++. Includes every public header.
#pragma once

#include "bnorm/comm.hpp"
#include "bnorm/error.hpp"
#include "bnorm/functional.hpp"
#include "bnorm/fused.hpp"
#include "bnorm/geometry.hpp"
#include "bnorm/kernels.hpp"
#include "bnorm/phases.hpp"
