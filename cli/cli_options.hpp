// Flags shared by the generating commands (generate, chat): sampling, length, context, and
// the backend options they imply. Parsing and range errors throw OptionsError naming the flag.
#pragma once

#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "actors/options.hpp"
#include "gpu/backend.hpp"
#include "model/sampler.hpp"

namespace troupe::cli {

struct GenerationOptions {
  ModelOptions model;
  SamplingParams sampling;
  int32_t max_tokens = 0;
  int32_t context = 0;  // 0: the model's trained context
  bool ignore_eos = false;
  BackendOptions backend() const;
};

void add_generation_options(boost::program_options::options_description& description,
                            int default_max_tokens);
GenerationOptions read_generation_options(const boost::program_options::variables_map& values);

// Parses args with description; prints help (with usage) and returns false when --help was
// asked. Throws OptionsError on a bad flag or value.
bool parse_or_help(const boost::program_options::options_description& description,
                   const std::vector<std::string>& args, const std::string& usage,
                   boost::program_options::variables_map& values);

// Runs body, mapping OptionsError to exit status 2 with the message on stderr.
template <class Body>
int with_usage_errors(const char* command, Body&& body);

}  // namespace troupe::cli

#include <iostream>

template <class Body>
int troupe::cli::with_usage_errors(const char* command, Body&& body) {
  try {
    return body();
  } catch (const OptionsError& error) {
    std::cerr << "troupe " << command << ": " << error.what() << "\n";
    return 2;
  }
}
