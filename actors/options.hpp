#pragma once
// The one options system of every troupe program (DESIGN.md, "Options and configuration").
// Boost.Program_options owns the command line and the config file: a flat INI file whose
// keys are the long flag names (`sync = parking`, `#` comments); a flag overrides the file.
// Option groups shared by the programs are added to an options_description by add_*() and
// read back into plain structs by read_*(); a new group is one struct and two functions.
// Every user mistake (unknown option, bad value, bad list element, unreadable config file)
// throws OptionsError with a message naming the option; programs print it and exit with 2.
// Nothing here keeps state; all functions are safe to call from any thread.

#include <algorithm>
#include <exception>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <boost/program_options.hpp>

#include "locks/sync_mode.hpp"
#include "model/default_model.hpp"

namespace troupe {

class OptionsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Splits a comma-separated list (spaces around elements ignored) and parses each element
// with parse_element(std::string_view) -> T, which throws a std::exception for a bad one.
// Throws OptionsError naming --option and the element for a bad, empty or repeated element.
template <class T, class ParseElement>
std::vector<T> parse_list(std::string_view option, std::string_view text,
                          ParseElement&& parse_element);

// Whole numbers within [min, max], e.g. --threads 1,2,8.
std::vector<int> parse_int_list(std::string_view option, std::string_view text, int min, int max);
// Sync mode names, e.g. --sync std,parking (names as in locks/sync_mode.hpp).
std::vector<SyncMode> parse_sync_list(std::string_view option, std::string_view text);
// The names joined by separator: sync_list_text(all_sync_modes, ",") is a valid --sync.
std::string sync_list_text(std::span<const SyncMode> modes, std::string_view separator);

// --help and --config FILE.
void add_general_options(boost::program_options::options_description& description);

// Parses args (without the program name): the command line, then the file named by
// --config, whose values fill only what the command line left unset. Unambiguous prefixes
// of option names are not accepted: flags are spelled out, as in config files.
boost::program_options::variables_map parse_options(
    const boost::program_options::options_description& description,
    const std::vector<std::string>& args);

bool help_requested(const boost::program_options::variables_map& values);

// The value of a scalar option, checked to lie in [min, max] (NaN never does).
template <class T>
T read_in_range(const boost::program_options::variables_map& values, const std::string& option,
                T min, T max);

// --model, --backend, --backend-threads.
struct ModelOptions {
  std::filesystem::path model;   // GGUF file
  std::string backend;           // "cpu", "cuda" or "sim" ("auto" resolved when read)
  std::string backend_fallback;  // non-empty when auto fell back to cpu: why, for a log line
  int backend_threads = 0;       // compute pool size; 0: one per logical core
};
void add_model_options(boost::program_options::options_description& description);
ModelOptions read_model_options(const boost::program_options::variables_map& values);

enum class Runtime { Actors, Threads };
std::string_view to_string(Runtime runtime);
Runtime parse_runtime(std::string_view name);  // throws std::invalid_argument

// --sync (a list of sync modes) and, for programs that run both runtimes, --runtime (a list).
struct SyncOptions {
  std::vector<SyncMode> sync;
  std::vector<Runtime> runtime;  // empty when the program has no --runtime option
};
void add_sync_option(boost::program_options::options_description& description,
                     const std::string& default_list);
void add_runtime_option(boost::program_options::options_description& description,
                        const std::string& default_list);
SyncOptions read_sync_options(const boost::program_options::variables_map& values);

// ---- templates ------------------------------------------------------------------------

namespace options_detail {
std::vector<std::string_view> split_list(std::string_view text);
[[noreturn]] void throw_bad_element(std::string_view option, std::string_view text,
                                    std::string_view element, std::string_view why);
std::string to_text(long long value);
std::string to_text(double value);
template <class T>
std::string to_text(T value) {
  if constexpr (std::is_floating_point_v<T>)
    return to_text(static_cast<double>(value));
  else
    return to_text(static_cast<long long>(value));
}
[[noreturn]] void throw_out_of_range(const std::string& option, const std::string& value,
                                     const std::string& min, const std::string& max);
}  // namespace options_detail

template <class T, class ParseElement>
std::vector<T> parse_list(std::string_view option, std::string_view text,
                          ParseElement&& parse_element) {
  std::vector<T> parsed;
  for (std::string_view element : options_detail::split_list(text)) {
    if (element.empty()) options_detail::throw_bad_element(option, text, element, "empty element");
    const T value = [&]() -> T {
      try {
        return parse_element(element);
      } catch (const std::exception& error) {
        options_detail::throw_bad_element(option, text, element, error.what());
      }
    }();
    if (std::find(parsed.begin(), parsed.end(), value) != parsed.end())
      options_detail::throw_bad_element(option, text, element, "listed twice");
    parsed.push_back(value);
  }
  return parsed;
}

template <class T>
T read_in_range(const boost::program_options::variables_map& values, const std::string& option,
                T min, T max) {
  const T value = values.at(option).as<T>();
  if (!(value >= min && value <= max))
    options_detail::throw_out_of_range(option, options_detail::to_text(value),
                                       options_detail::to_text(min), options_detail::to_text(max));
  return value;
}

}  // namespace troupe
