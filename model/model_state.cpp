#include "model/model_state.hpp"

#include <algorithm>
#include <exception>
#include <utility>

namespace troupe {

std::unique_ptr<LoadedModel> LoadedModel::open(const std::string& path,
                                               const RuntimeFactory& runtime_factory) {
  try {
    auto file = std::make_unique<GgufFile>(GgufFile::open(path));
    ModelDesc desc = ModelDesc::from_gguf(*file);
    Tokenizer tokenizer = Tokenizer::from_gguf(*file);
    auto model = std::make_unique<LoadedModel>(path, std::move(file), std::move(desc),
                                               std::move(tokenizer));
    if (runtime_factory) model->attach_runtime(runtime_factory);
    return model;
  } catch (const std::exception& error) {
    throw ModelLoadError("cannot load model '" + path + "': " + error.what());
  }
}

LoadedModel::LoadedModel(std::string source, std::unique_ptr<GgufFile> file, ModelDesc desc,
                         Tokenizer tokenizer)
    : source_(std::move(source)),
      file_(std::move(file)),
      desc_(std::move(desc)),
      tokenizer_(std::move(tokenizer)) {}

LoadedModel::~LoadedModel() = default;

void LoadedModel::attach_runtime(const RuntimeFactory& factory) { runtime_ = factory(*this); }

std::string reload_failure_message(const std::string& cause, uint64_t current_generation,
                                   const std::string& current_source) {
  return cause + "; generation " + std::to_string(current_generation) + " ('" + current_source +
         "') stays in service";
}

ModelState::ModelState(std::unique_ptr<LoadedModel> first, ModelStateOptions options)
    : sampling_defaults_(options.sampling_defaults),
      runtime_factory_(std::move(options.runtime_factory)) {
  if (!first) throw std::invalid_argument("ModelState needs a model to start with");
  sampling_defaults_.validate();
  install(std::move(first));
}

ModelState ModelState::open(const std::string& path, ModelStateOptions options) {
  auto first = LoadedModel::open(path, options.runtime_factory);
  return ModelState(std::move(first), std::move(options));
}

uint64_t ModelState::reload(const std::string& path) {
  std::unique_ptr<LoadedModel> next;
  try {
    next = LoadedModel::open(path, runtime_factory_);
  } catch (const ModelLoadError& error) {
    throw ModelLoadError(reload_failure_message(error.what(), generation(), current_->source()));
  }
  return install(std::move(next));
}

uint64_t ModelState::install(std::unique_ptr<LoadedModel> model) {
  if (!model) throw std::invalid_argument("install: no model given");
  if (model->generation_ != 0)
    throw std::invalid_argument("install: model '" + model->source() +
                                "' is already installed as generation " +
                                std::to_string(model->generation_));
  std::erase_if(generations_, [](const auto& held) { return held.expired(); });
  model->generation_ = ++loads_;
  current_ = std::shared_ptr<const LoadedModel>(std::move(model));
  generations_.push_back(current_);
  current_counters_ = {};
  return current_->generation();
}

void ModelState::set_sampling_defaults(const SamplingParams& params) {
  params.validate();
  sampling_defaults_ = params;
}

void ModelState::record_usage(uint64_t generation, const ModelCounters& usage) {
  auto add = [&](ModelCounters& counters) {
    counters.requests += usage.requests;
    counters.prompt_tokens += usage.prompt_tokens;
    counters.generated_tokens += usage.generated_tokens;
  };
  add(total_counters_);
  if (generation == current_->generation()) add(current_counters_);
}

ModelStateSnapshot ModelState::snapshot() const {
  ModelStateSnapshot snapshot;
  snapshot.generation = current_->generation();
  snapshot.source = current_->source();
  snapshot.loads = loads_;
  snapshot.live_generations = static_cast<uint64_t>(
      std::count_if(generations_.begin(), generations_.end(),
                    [](const auto& held) { return !held.expired(); }));
  snapshot.current = current_counters_;
  snapshot.total = total_counters_;
  snapshot.sampling_defaults = sampling_defaults_;
  return snapshot;
}

}  // namespace troupe
