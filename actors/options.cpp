#include "actors/options.hpp"

#include "gpu/backend.hpp"

#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>

namespace troupe {
namespace po = boost::program_options;

namespace options_detail {

std::vector<std::string_view> split_list(std::string_view text) {
  std::vector<std::string_view> elements;
  while (true) {
    const std::size_t comma = text.find(',');
    std::string_view element = text.substr(0, comma);
    const std::size_t first = element.find_first_not_of(" \t");
    element = first == std::string_view::npos
                  ? std::string_view{}
                  : element.substr(first, element.find_last_not_of(" \t") - first + 1);
    elements.push_back(element);
    if (comma == std::string_view::npos) return elements;
    text.remove_prefix(comma + 1);
  }
}

void throw_bad_element(std::string_view option, std::string_view text, std::string_view element,
                       std::string_view why) {
  std::ostringstream message;
  message << "--" << option << ": ";
  if (element.empty())
    message << why;
  else
    message << "'" << element << "': " << why;
  message << " (in '" << text << "')";
  throw OptionsError(message.str());
}

std::string to_text(long long value) { return std::to_string(value); }

std::string to_text(double value) {
  std::ostringstream text;
  text << value;
  return text.str();
}

void throw_out_of_range(const std::string& option, const std::string& value,
                        const std::string& min, const std::string& max) {
  throw OptionsError("--" + option + ": " + value + " is outside the allowed range [" + min +
                     ", " + max + "]");
}

}  // namespace options_detail

std::vector<int> parse_int_list(std::string_view option, std::string_view text, int min,
                                int max) {
  return parse_list<int>(option, text, [&](std::string_view element) {
    const std::string digits(element);
    std::size_t used = 0;
    long long value = 0;
    try {
      value = std::stoll(digits, &used, 10);
    } catch (const std::exception&) {
      throw std::invalid_argument("not a whole number");
    }
    if (used != digits.size()) throw std::invalid_argument("not a whole number");
    if (value < min || value > max)
      throw std::invalid_argument("outside the allowed range [" + std::to_string(min) + ", " +
                                  std::to_string(max) + "]");
    return static_cast<int>(value);
  });
}

std::vector<SyncMode> parse_sync_list(std::string_view option, std::string_view text) {
  return parse_list<SyncMode>(option, text, [](std::string_view element) {
    if (const std::optional<SyncMode> mode = parse_sync_mode(element)) return *mode;
    throw std::invalid_argument("unknown sync mode (expected one of " +
                                sync_list_text(all_sync_modes, ", ") + ")");
  });
}

std::string sync_list_text(std::span<const SyncMode> modes, std::string_view separator) {
  std::string text;
  for (SyncMode mode : modes) {
    if (!text.empty()) text += separator;
    text += to_string(mode);
  }
  return text;
}

void add_general_options(po::options_description& description) {
  description.add_options()
      ("help", "print this help and exit")
      ("config", po::value<std::string>()->value_name("FILE"),
       "read options from FILE (INI: `long-flag-name = value`, `#` comments); "
       "flags given on the command line override it");
}

po::variables_map parse_options(const po::options_description& description,
                                const std::vector<std::string>& args) {
  po::variables_map values;
  try {
    const int style = po::command_line_style::default_style &
                      ~po::command_line_style::allow_guessing;
    const po::positional_options_description no_positional_arguments;
    po::store(po::command_line_parser(args)
                  .options(description)
                  .positional(no_positional_arguments)
                  .style(style)
                  .run(),
              values);
  } catch (const po::too_many_positional_options_error&) {
    throw OptionsError("unexpected argument: options take the form --name VALUE (see --help)");
  } catch (const po::error& error) {
    throw OptionsError(error.what());
  }
  if (values.count("config")) {
    const std::string path = values["config"].as<std::string>();
    std::ifstream file(path);
    if (!file) throw OptionsError("--config: cannot open '" + path + "'");
    try {
      po::store(po::parse_config_file(file, description, false), values);
    } catch (const po::error& error) {
      throw OptionsError("config file '" + path + "': " + error.what());
    }
  }
  try {
    po::notify(values);
  } catch (const po::error& error) {
    throw OptionsError(error.what());
  }
  return values;
}

bool help_requested(const po::variables_map& values) { return values.count("help") > 0; }

void add_model_options(po::options_description& description) {
  description.add_options()
      ("model,m", po::value<std::string>()->value_name("PATH")
                    ->default_value(default_model_path().string()),
       "GGUF model file")
      ("backend", po::value<std::string>()->value_name("NAME")->default_value("auto"),
       "compute backend: auto (cuda when a GPU can run it, else cpu), cpu, cuda or sim")
      ("backend-threads", po::value<int>()->value_name("N")->default_value(0),
       "threads of the compute pool (0: one per logical core)");
}

ModelOptions read_model_options(const po::variables_map& values) {
  ModelOptions options;
  options.model = values.at("model").as<std::string>();
  const std::string& backend = values.at("backend").as<std::string>();
  if (backend != "auto" && backend != "cpu" && backend != "cuda" && backend != "sim")
    throw OptionsError("--backend: unknown backend '" + backend +
                       "' (expected auto, cpu, cuda or sim)");
  options.backend = resolve_backend_name(backend, &options.backend_fallback);
  options.backend_threads = read_in_range(values, "backend-threads", 0, 4096);
  return options;
}

std::string_view to_string(Runtime runtime) {
  return runtime == Runtime::Actors ? "actors" : "threads";
}

Runtime parse_runtime(std::string_view name) {
  if (name == "actors") return Runtime::Actors;
  if (name == "threads") return Runtime::Threads;
  throw std::invalid_argument("unknown runtime (expected actors or threads)");
}

void add_sync_option(po::options_description& description, const std::string& default_list) {
  description.add_options()
      ("sync", po::value<std::string>()->value_name("LIST")->default_value(default_list),
       "sync modes, comma-separated: std, std-rw, parking, parking-rw, futex, spin, actor");
}

void add_runtime_option(po::options_description& description, const std::string& default_list) {
  description.add_options()
      ("runtime", po::value<std::string>()->value_name("LIST")->default_value(default_list),
       "runtimes, comma-separated: actors, threads");
}

SyncOptions read_sync_options(const po::variables_map& values) {
  SyncOptions options;
  options.sync = parse_sync_list("sync", values.at("sync").as<std::string>());
  if (values.count("runtime")) {
    options.runtime = parse_list<Runtime>("runtime", values.at("runtime").as<std::string>(),
                                          parse_runtime);
  }
  return options;
}

}  // namespace troupe
