// troupe tokenize: the token ids and pieces of a text, one token per line.
#include <iostream>

#include "cli/cli_options.hpp"
#include "cli/commands.hpp"
#include "model/gguf.hpp"
#include "model/tokenizer.hpp"

namespace po = boost::program_options;

namespace troupe::cli {
namespace {

// A piece as a readable, one-line string: control bytes and quotes escaped.
std::string printable(std::string_view piece) {
  std::string out = "\"";
  for (unsigned char c : piece) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c == '"' || c == '\\') { out += '\\'; out += char(c); }
    else if (c < 0x20 || c == 0x7f) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\x%02x", c);
      out += buffer;
    } else out += char(c);
  }
  return out + "\"";
}

}  // namespace

int tokenize(const std::vector<std::string>& args_in) {
  return with_usage_errors("tokenize", [&] {
    std::vector<std::string> args = args_in;
    std::string text;
    bool have_text = false;
    if (!args.empty() && (args[0].empty() || args[0][0] != '-')) {  // troupe tokenize TEXT
      text = args[0];
      have_text = true;
      args.erase(args.begin());
    }
    po::options_description description("troupe tokenize options");
    add_general_options(description);
    add_model_options(description);
    description.add_options()
        ("text", po::value<std::string>()->value_name("TEXT"), "the text (or give it first)")
        ("no-special", po::bool_switch(), "do not add BOS/EOS")
        ("parse-special", po::bool_switch(), "split special-token text such as <|im_start|>")
        ("ids-only", po::bool_switch(), "print only the ids, on one line");
    po::variables_map values;
    if (!parse_or_help(description, args, "usage: troupe tokenize TEXT [-m MODEL]", values))
      return 0;
    if (values.count("text")) {
      if (have_text) throw OptionsError("--text: the text was already given as an argument");
      text = values.at("text").as<std::string>();
      have_text = true;
    }
    if (!have_text) throw OptionsError("the text to tokenize is missing (troupe tokenize TEXT)");
    const ModelOptions model = read_model_options(values);

    const GgufFile file = GgufFile::open(model.model.string());
    const Tokenizer tokenizer = Tokenizer::from_gguf(file);
    const std::vector<int32_t> ids = tokenizer.encode(
        text, !values.at("no-special").as<bool>(), values.at("parse-special").as<bool>());
    if (values.at("ids-only").as<bool>()) {
      for (std::size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
      std::cout << "\n";
    } else {
      for (int32_t id : ids) std::cout << id << "\t" << printable(tokenizer.piece(id)) << "\n";
      std::cerr << ids.size() << " tokens\n";
    }
    return 0;
  });
}

}  // namespace troupe::cli
