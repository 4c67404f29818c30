#include "cli/cli_options.hpp"

#include <chrono>
#include <iostream>
#include <limits>

namespace po = boost::program_options;

namespace troupe::cli {

void add_generation_options(po::options_description& description, int default_max_tokens) {
  add_model_options(description);
  description.add_options()
      ("n-predict,n", po::value<int>()->value_name("N")->default_value(default_max_tokens),
       "most tokens to generate")
      ("temp", po::value<float>()->value_name("T")->default_value(0.8f, "0.8"),
       "sampling temperature; 0 = greedy")
      ("top-k", po::value<int>()->value_name("K")->default_value(40), "top-k filter; 0 = off")
      ("top-p", po::value<float>()->value_name("P")->default_value(0.95f, "0.95"), "top-p filter; 1 = off")
      ("min-p", po::value<float>()->value_name("P")->default_value(0.05f, "0.05"), "min-p filter; 0 = off")
      ("repeat-penalty", po::value<float>()->value_name("X")->default_value(1.0f, "1"),
       "repetition penalty; 1 = off")
      ("frequency-penalty", po::value<float>()->value_name("X")->default_value(0.0f, "0"),
       "frequency penalty")
      ("presence-penalty", po::value<float>()->value_name("X")->default_value(0.0f, "0"),
       "presence penalty")
      ("seed", po::value<uint64_t>()->value_name("S"),
       "random seed (default: from the clock); same seed, same text")
      ("ctx", po::value<int>()->value_name("N")->default_value(0),
       "context length in tokens; 0 = the model's trained context")
      ("ignore-eos", po::bool_switch(), "keep generating past end-of-generation tokens");
}

GenerationOptions read_generation_options(const po::variables_map& values) {
  GenerationOptions options;
  options.model = read_model_options(values);
  if (!options.model.backend_fallback.empty())
    std::cerr << "troupe: " << options.model.backend_fallback << "\n";
  options.max_tokens = read_in_range<int>(values, "n-predict", 0, 1 << 20);
  options.context = read_in_range<int>(values, "ctx", 0, 1 << 20);
  options.ignore_eos = values.at("ignore-eos").as<bool>();
  SamplingParams& s = options.sampling;
  s.temperature = read_in_range<float>(values, "temp", 0.0f, 100.0f);
  s.top_k = read_in_range<int>(values, "top-k", 0, std::numeric_limits<int>::max());
  s.top_p = read_in_range<float>(values, "top-p", 1e-6f, 1.0f);
  s.min_p = read_in_range<float>(values, "min-p", 0.0f, 1.0f);
  s.repetition_penalty = read_in_range<float>(values, "repeat-penalty", 1e-3f, 100.0f);
  s.frequency_penalty = read_in_range<float>(values, "frequency-penalty", -2.0f, 2.0f);
  s.presence_penalty = read_in_range<float>(values, "presence-penalty", -2.0f, 2.0f);
  s.seed = values.count("seed")
               ? values.at("seed").as<uint64_t>()
               : static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  return options;
}

BackendOptions GenerationOptions::backend() const {
  BackendOptions options;
  options.name = model.backend;
  options.threads = model.backend_threads;
  return options;
}

bool parse_or_help(const po::options_description& description,
                   const std::vector<std::string>& args, const std::string& usage,
                   po::variables_map& values) {
  values = parse_options(description, args);
  if (help_requested(values)) {
    std::cout << usage << "\n" << description;
    return false;
  }
  return true;
}

}  // namespace troupe::cli
