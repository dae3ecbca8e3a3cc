// bnorm: batch normalization for C++. Includes every public header.
#pragma once

#include "bnorm/batch_norm.hpp"
#include "bnorm/comm.hpp"
#include "bnorm/constraints.hpp"
#include "bnorm/error.hpp"
#include "bnorm/functional.hpp"
#include "bnorm/fused.hpp"
#include "bnorm/geometry.hpp"
#include "bnorm/half.hpp"
#include "bnorm/initializers.hpp"
#include "bnorm/io.hpp"
#include "bnorm/kernels.hpp"
#include "bnorm/phases.hpp"
#include "bnorm/regularizers.hpp"
#include "bnorm/safetensors.hpp"
#include "bnorm/standard_scaler.hpp"
#include "bnorm/version.hpp"
