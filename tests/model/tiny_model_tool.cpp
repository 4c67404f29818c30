// troupe-tiny-model: writes a named tiny-model preset as a GGUF file, so that scripts (the
// llama.cpp reference recorder) run on exactly the bytes the tests generate.
//   troupe-tiny-model --list
//   troupe-tiny-model --spec NAME --out FILE
#include <cstring>
#include <exception>
#include <iostream>
#include <string>

#include "tests/util/tiny_model.hpp"

namespace {

int usage() {
  std::cerr << "usage: troupe-tiny-model --list\n"
               "       troupe-tiny-model --spec NAME --out FILE\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string spec, out;
  bool list = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--list") {
      list = true;
    } else if ((arg == "--spec" || arg == "--out") && i + 1 < argc) {
      (arg == "--spec" ? spec : out) = argv[++i];
    } else {
      return usage();
    }
  }
  try {
    if (list) {
      for (const auto& preset : troupe::test::tiny_model_presets())
        std::cout << preset.name << "  " << preset.description << "\n";
      return 0;
    }
    if (spec.empty() || out.empty()) return usage();
    troupe::test::write_tiny_model(troupe::test::tiny_model_preset(spec), out);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "troupe-tiny-model: " << e.what() << "\n";
    return 1;
  }
}
