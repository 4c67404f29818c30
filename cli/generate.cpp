// troupe generate: completes a prompt and streams the text to stdout; speeds to stderr.
#include <cstdio>
#include <iostream>

#include "cli/cli_options.hpp"
#include "cli/commands.hpp"
#include "cli/local_model.hpp"
#include "model/detokenizer.hpp"

namespace po = boost::program_options;

namespace troupe::cli {

void print_speeds(const GenerationStats& stats) {
  const int32_t computed = stats.prompt_tokens - stats.cached_tokens;
  std::fprintf(stderr,
               "\nprompt: %d tokens (%d cached), %.1f tokens/s | generation: %d tokens, "
               "%.1f tokens/s%s\n",
               stats.prompt_tokens, stats.cached_tokens,
               stats.prompt_seconds > 0 ? computed / stats.prompt_seconds : 0.0,
               stats.generated_tokens,
               stats.generation_seconds > 0 ? (stats.generated_tokens - 1) / stats.generation_seconds
                                            : 0.0,
               stats.stopped_at_eog ? " (end of generation)" : "");
}

int generate(const std::vector<std::string>& args) {
  return with_usage_errors("generate", [&] {
    po::options_description description("troupe generate options");
    add_general_options(description);
    add_generation_options(description, 64);
    description.add_options()
        ("prompt,p", po::value<std::string>()->value_name("TEXT"), "the prompt (required)")
        ("echo", po::bool_switch(), "print the prompt before the generated text")
        ("no-special", po::bool_switch(),
         "treat special-token text in the prompt (e.g. <|im_start|>) as plain text");
    po::variables_map values;
    if (!parse_or_help(description, args,
                       "usage: troupe generate -m MODEL -p TEXT [-n 64] [--temp 0] [--seed S]",
                       values))
      return 0;
    if (!values.count("prompt")) throw OptionsError("--prompt: required (the text to complete)");
    const GenerationOptions options = read_generation_options(values);
    const std::string prompt = values.at("prompt").as<std::string>();

    LocalModel model(options.model.model.string(), options.backend(), options.context);
    const std::vector<int32_t> ids =
        model.tokenizer().encode(prompt, true, !values.at("no-special").as<bool>());
    if (ids.empty()) throw OptionsError("--prompt: the prompt has no tokens");
    if (values.at("echo").as<bool>()) std::cout << prompt << std::flush;

    Detokenizer detokenizer(model.tokenizer(), DecodeOptions{false, false});
    const GenerationStats stats = model.generate(
        ids, options.sampling, options.max_tokens, options.ignore_eos,
        [&](const SampleResult& sampled) {
          std::cout << detokenizer.push(sampled.token) << std::flush;
          return true;
        });
    std::cout << detokenizer.flush() << std::endl;
    print_speeds(stats);
    return 0;
  });
}

}  // namespace troupe::cli
