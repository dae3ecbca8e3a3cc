// The training engine in one include.
#pragma once

#include "bnorm/nn/activations.hpp"
#include "bnorm/nn/batch_norm_layer.hpp"
#include "bnorm/nn/batcher.hpp"
#include "bnorm/nn/dense.hpp"
#include "bnorm/nn/idx.hpp"
#include "bnorm/nn/layer.hpp"
#include "bnorm/nn/loss.hpp"
#include "bnorm/nn/metrics.hpp"
#include "bnorm/nn/mlp.hpp"
#include "bnorm/nn/rng.hpp"
#include "bnorm/nn/sequential.hpp"
#include "bnorm/nn/sgd.hpp"
#include "bnorm/nn/standard_scaler.hpp"
#include "bnorm/nn/tensor.hpp"
#include "bnorm/nn/trainer.hpp"
