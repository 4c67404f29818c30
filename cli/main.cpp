// troupe: the command-line client. `troupe <command> --help` documents each command.
#include <cstring>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.hpp"

namespace {

constexpr const char* kUsage =
    "usage: troupe <command> [options]\n"
    "commands:\n"
    "  generate   complete a prompt, streaming the text to stdout\n"
    "  chat       multi-turn chat with the model's chat template (reads stdin)\n"
    "  tokenize   print the token ids and pieces of a text\n"
    "  inspect    print a GGUF file's metadata and tensors\n"
    "Run `troupe <command> --help` for its options.\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  try {
    if (command == "generate") return troupe::cli::generate(args);
    if (command == "chat") return troupe::cli::chat(args);
    if (command == "tokenize") return troupe::cli::tokenize(args);
    if (command == "inspect") return troupe::cli::inspect(args);
  } catch (const std::exception& error) {
    std::cerr << "troupe " << command << ": " << error.what() << "\n";
    return 1;
  }
  std::cerr << "troupe: unknown command '" << command << "'\n" << kUsage;
  return 2;
}
