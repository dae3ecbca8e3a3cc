// RunOptions as JSON: for run.json and for checking that a resumed run is the same run.
#include "options.hpp"

#include <fmt/format.h>

#include "bnorm/nn/arch.hpp"

namespace bnorm::train {

namespace {

nlohmann::json lr_drops(const std::vector<nn::LrDrop>& drops) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& d : drops) j.push_back(fmt::format("{}:{}", d.step, d.factor));
  return j;
}

}  // namespace

nlohmann::json fingerprint(const RunOptions& o) {
  const auto& c = o.config;
  const auto& m = c.model;
  const auto& bn = m.bn_options;
  nlohmann::json j = {
      {"hidden", m.hidden},
      {"arch", nn::format_arch(m.arch)},
      {"dropout", m.dropout},
      {"bn_scale_bias", m.bn_options.center && m.bn_options.scale},
      {"activation", nn::activation_name(m.activation)},
      {"bn", nn::bn_placement_name(m.bn)},
      {"bn_momentum", bn.momentum},
      {"bn_epsilon", bn.epsilon},
      {"renorm", bn.renorm},
      {"renorm_rmax", bn.renorm_rmax},
      {"renorm_dmax", bn.renorm_dmax},
      {"virtual_batch", bn.virtual_batch},
      {"sync_bn", c.sync_bn},
      {"init", m.init.kind == nn::Init::Kind::kGaussian ? "gaussian" : "glorot"},
      {"init_std", m.init.std},
      {"batch", c.batch},
      {"lr", c.sgd.learning_rate},
      {"momentum", c.sgd.momentum},
      {"weight_decay", c.sgd.weight_decay},
      {"lr_drop", lr_drops(c.sgd.lr_drops)},
      {"seed", c.seed},
      {"eval_every", o.eval_every},
      {"eval_limit", o.eval_limit},
      {"track_unit", o.track_unit},
  };
  // Only when not the default, so that checkpoints written before --inputs existed still resume.
  if (o.inputs != "raw") j["inputs"] = o.inputs;
  return j;
}

nlohmann::json to_json(const RunOptions& o) {
  nlohmann::json j = fingerprint(o);
  j["name"] = o.name;
  j["inputs"] = o.inputs;
  j["steps"] = o.steps;
  j["checkpoint_every"] = o.checkpoint_every;
  j["out"] = o.out.string();
  return j;
}

}  // namespace bnorm::train
