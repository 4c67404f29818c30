// troupe inspect: a GGUF file's metadata (long arrays and strings shortened) and tensors.
#include <cstdio>

#include <fmt/format.h>
#include <iostream>
#include <map>

#include "cli/cli_options.hpp"
#include "cli/commands.hpp"
#include "model/gguf.hpp"
#include "model/model_desc.hpp"

namespace po = boost::program_options;

namespace troupe::cli {
namespace {

std::string shorten(std::string_view text, std::size_t limit) {
  std::string out;
  for (char c : text.substr(0, limit)) out += c == '\n' ? std::string("\\n") : std::string(1, c);
  if (text.size() > limit) out += "... (" + std::to_string(text.size()) + " bytes)";
  return out;
}

std::string render(const GgufValue& value, std::size_t limit);

std::string render_array(const GgufArray& array, std::size_t limit) {
  std::string out = "[";
  const uint64_t shown = std::min<uint64_t>(array.size, 8);
  for (uint64_t i = 0; i < shown; ++i) {
    if (i) out += ", ";
    switch (array.elem_type) {
      case GgufType::String: out += "\"" + shorten(array.strings[i], 40) + "\""; break;
      case GgufType::Array: out += render(array.arrays[i], limit); break;
      case GgufType::Bool: out += *array.bool_at(i) ? "true" : "false"; break;
      case GgufType::F32:
      case GgufType::F64: out += std::to_string(*array.f64_at(i)); break;
      case GgufType::I8: case GgufType::I16: case GgufType::I32: case GgufType::I64:
        out += std::to_string(*array.i64_at(i)); break;
      default: out += std::to_string(*array.u64_at(i)); break;
    }
  }
  if (array.size > shown) out += ", ... (" + std::to_string(array.size) + " elements)";
  return out + "]";
}

std::string render(const GgufValue& value, std::size_t limit) {
  switch (value.type()) {
    case GgufType::String: return "\"" + shorten(*value.as_string(), limit) + "\"";
    case GgufType::Array: return render_array(*value.as_array(), limit);
    case GgufType::Bool: return *value.as_bool() ? "true" : "false";
    case GgufType::F32:
    case GgufType::F64: {
      char buffer[32];
      std::snprintf(buffer, sizeof buffer, "%g", *value.as_f64());
      return buffer;
    }
    case GgufType::I8: case GgufType::I16: case GgufType::I32: case GgufType::I64:
      return std::to_string(*value.as_i64());
    default: return std::to_string(*value.as_u64());
  }
}

}  // namespace

int inspect(const std::vector<std::string>& args_in) {
  return with_usage_errors("inspect", [&] {
    std::vector<std::string> args = args_in;
    if (!args.empty() && !args[0].empty() && args[0][0] != '-') {  // troupe inspect FILE
      args.insert(args.begin(), "--model");
    }
    po::options_description description("troupe inspect options");
    add_general_options(description);
    add_model_options(description);
    description.add_options()
        ("no-tensors", po::bool_switch(), "print only the metadata")
        ("full", po::bool_switch(), "do not shorten long strings");
    po::variables_map values;
    if (!parse_or_help(description, args, "usage: troupe inspect [FILE | -m MODEL]", values))
      return 0;
    const ModelOptions model = read_model_options(values);
    const GgufFile file = GgufFile::open(model.model.string());
    const std::size_t limit = values.at("full").as<bool>() ? SIZE_MAX : 120;

    std::cout << fmt::format(
        "file: {}\nGGUF v{}, {} bytes, alignment {}, {} metadata keys, {} tensors\n\n",
        file.path(), file.version(), file.file_size(), file.alignment(), file.metadata().size(),
        file.tensors().size());
    for (const GgufKV& kv : file.metadata())
      std::cout << fmt::format("{:<40} {:<7} {}\n", kv.key, gguf_type_name(kv.value.type()),
                               render(kv.value, limit));
    try {
      const ModelDesc desc = ModelDesc::from_gguf(file);
      std::cout << fmt::format(
          "\nmodel: {}, {} layers, embd {}, heads {} (kv {}, dim {}), ffn {}, vocab {}, "
          "context {}, rope base {} ({}), {} output\n",
                  desc.architecture, desc.n_layer, desc.n_embd, desc.n_head,
                  desc.n_head_kv, desc.head_dim, desc.n_ff, desc.n_vocab, desc.n_ctx_train,
                  desc.rope_freq_base,
                  desc.rope_layout == RopeLayout::Adjacent ? "adjacent pairs" : "halves",
                  desc.tied_output ? "tied" : "separate");
    } catch (const std::exception& error) {
      std::cout << "\nnot a model troupe can run: " << error.what() << "\n";
    }
    if (!values.at("no-tensors").as<bool>()) {
      std::map<std::string, std::pair<int, uint64_t>> by_type;
      std::cout << fmt::format("\n{:<32} {:<6} {:<22} {:>12} {:>12}\n", "tensor", "type", "dims",
                               "offset", "bytes");
      for (const GgufTensor& t : file.tensors()) {
        std::string dims;
        for (std::size_t i = 0; i < t.dims.size(); ++i)
          dims += (i ? " x " : "") + std::to_string(t.dims[i]);
        const std::string type(traits_of(t.type).name);
        std::cout << fmt::format("{:<32} {:<6} {:<22} {:>12} {:>12}\n", t.name, type, dims,
                                 t.offset, t.n_bytes);
        by_type[type].first++;
        by_type[type].second += t.n_bytes;
      }
      std::cout << "\n";
      for (const auto& [type, count_bytes] : by_type)
        std::cout << fmt::format("{:<6} {:>4} tensors {:>12} bytes\n", type, count_bytes.first,
                                 count_bytes.second);
    }
    return 0;
  });
}

}  // namespace troupe::cli
