// troupe chat: a multi-turn conversation on stdin/stdout with the model's chat template.
// Each input line is a user message; `/reset` starts over, `/quit` (or end of input) ends.
#include <iostream>
#include <string>
#include <unistd.h>

#include "cli/cli_options.hpp"
#include "cli/commands.hpp"
#include "cli/local_model.hpp"
#include "model/chat_prompt.hpp"
#include "model/detokenizer.hpp"

namespace po = boost::program_options;

namespace troupe::cli {

void print_speeds(const GenerationStats& stats);  // generate.cpp

int chat(const std::vector<std::string>& args) {
  return with_usage_errors("chat", [&] {
    po::options_description description("troupe chat options");
    add_general_options(description);
    add_generation_options(description, 512);
    description.add_options()
        ("system", po::value<std::string>()->value_name("TEXT"),
         "system message (default: the template's own, if any)")
        ("template", po::value<std::string>()->value_name("NAME"),
         "use this chat template family instead of the model's")
        ("stats", po::bool_switch(), "print token counts and speeds after each reply");
    po::variables_map values;
    if (!parse_or_help(description, args, "usage: troupe chat [-m MODEL] [--system TEXT]", values))
      return 0;
    const GenerationOptions options = read_generation_options(values);
    LocalModel model(options.model.model.string(), options.backend(), options.context);
    const Vocab& vocab = model.tokenizer().vocab();
    const ChatTemplate chat_template =
        values.count("template")
            ? ChatTemplate::named(values.at("template").as<std::string>(), vocab)
            : ChatTemplate::detect(vocab.chat_template(), vocab);
    const bool interactive = isatty(STDIN_FILENO);
    if (interactive)
      std::cerr << "chat template: " << chat_template.name()
                << " (one message per line; /reset, /quit)\n";

    std::vector<ChatMessage> conversation;
    auto reset = [&] {
      conversation.clear();
      if (values.count("system"))
        conversation.push_back({"system", values.at("system").as<std::string>()});
    };
    reset();
    std::string line;
    while ((interactive ? std::cerr << "> " : std::cerr), std::getline(std::cin, line)) {
      if (line == "/quit") break;
      if (line == "/reset") {
        reset();
        continue;
      }
      if (line.empty()) continue;
      conversation.push_back({"user", line});
      const std::vector<int32_t> ids = encode_chat(model.tokenizer(), chat_template, conversation);
      Detokenizer detokenizer(model.tokenizer(), DecodeOptions{false, false});
      std::string reply;
      const GenerationStats stats = model.generate(
          ids, options.sampling, options.max_tokens, options.ignore_eos,
          [&](const SampleResult& sampled) {
            const std::string text = detokenizer.push(sampled.token);
            reply += text;
            std::cout << text << std::flush;
            return true;
          });
      const std::string tail = detokenizer.flush();
      reply += tail;
      std::cout << tail << std::endl;
      if (values.at("stats").as<bool>()) print_speeds(stats);
      conversation.push_back({"assistant", reply});
    }
    return 0;
  });
}

}  // namespace troupe::cli
