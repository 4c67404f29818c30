// troupe inspect: a GGUF file's metadata (long arrays and strings shortened) and tensors.
#include <cinttypes>
#include <cstdio>
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

    std::printf("file: %s\nGGUF v%u, %zu bytes, alignment %u, %zu metadata keys, %zu tensors\n\n",
                file.path().c_str(), file.version(), file.file_size(), file.alignment(),
                file.metadata().size(), file.tensors().size());
    for (const GgufKV& kv : file.metadata())
      std::printf("%-40s %-7s %s\n", kv.key.c_str(),
                  std::string(gguf_type_name(kv.value.type())).c_str(),
                  render(kv.value, limit).c_str());
    try {
      const ModelDesc desc = ModelDesc::from_gguf(file);
      std::printf("\nmodel: %s, %u layers, embd %u, heads %u (kv %u, dim %u), ffn %u, vocab %u, "
                  "context %u, rope base %g (%s), %s output\n",
                  desc.architecture.c_str(), desc.n_layer, desc.n_embd, desc.n_head,
                  desc.n_head_kv, desc.head_dim, desc.n_ff, desc.n_vocab, desc.n_ctx_train,
                  desc.rope_freq_base,
                  desc.rope_layout == RopeLayout::Adjacent ? "adjacent pairs" : "halves",
                  desc.tied_output ? "tied" : "separate");
    } catch (const std::exception& error) {
      std::printf("\nnot a model troupe can run: %s\n", error.what());
    }
    if (!values.at("no-tensors").as<bool>()) {
      std::map<std::string, std::pair<int, uint64_t>> by_type;
      std::printf("\n%-32s %-6s %-22s %12s %12s\n", "tensor", "type", "dims", "offset", "bytes");
      for (const GgufTensor& t : file.tensors()) {
        std::string dims;
        for (std::size_t i = 0; i < t.dims.size(); ++i)
          dims += (i ? " x " : "") + std::to_string(t.dims[i]);
        const std::string type(traits_of(t.type).name);
        std::printf("%-32s %-6s %-22s %12" PRIu64 " %12" PRIu64 "\n", t.name.c_str(),
                    type.c_str(), dims.c_str(), t.offset, t.n_bytes);
        by_type[type].first++;
        by_type[type].second += t.n_bytes;
      }
      std::printf("\n");
      for (const auto& [type, count_bytes] : by_type)
        std::printf("%-6s %4d tensors %12" PRIu64 " bytes\n", type.c_str(), count_bytes.first,
                    count_bytes.second);
    }
    return 0;
  });
}

}  // namespace troupe::cli
