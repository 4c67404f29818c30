#include "bench/compare.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <ostream>
#include <stdexcept>

#include <fmt/format.h>

#include "actors/options.hpp"
#include "bench/report.hpp"
#include "bench/statistics.hpp"

namespace troupe {
namespace {

using Json = nlohmann::json;

std::vector<std::string> axes_of(const Json& document, const Json& result) {
  std::vector<std::string> axes;
  if (document.contains("axes") && document["axes"].is_array()) {
    for (const Json& axis : document["axes"])
      if (axis.is_string()) axes.push_back(axis.get<std::string>());
    return axes;
  }
  for (const auto& [key, value] : result.items())
    if (value.is_string() || value.is_boolean() || key == "threads" || key == "batch_size")
      axes.push_back(key);
  return axes;
}

std::string value_text(const Json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}

std::string result_key(const Json& result, const std::vector<std::string>& axes) {
  std::string key;
  for (const std::string& axis : axes) {
    if (!result.contains(axis)) continue;
    if (!key.empty()) key += ' ';
    key += axis + '=' + value_text(result[axis]);
  }
  return key;
}

void flatten(const Json& value, const std::string& path, std::map<std::string, double>& out) {
  if (value.is_number()) {
    out[path] = value.get<double>();
  } else if (value.is_null()) {
    out[path] = std::numeric_limits<double>::quiet_NaN();
  } else if (value.is_object()) {
    for (const auto& [key, element] : value.items())
      flatten(element, path.empty() ? key : path + '.' + key, out);
  }
}

std::map<std::string, double> figures_of(const Json& result, const std::vector<std::string>& axes) {
  std::map<std::string, double> figures;
  for (const auto& [key, value] : result.items())
    if (std::find(axes.begin(), axes.end(), key) == axes.end()) flatten(value, key, figures);
  return figures;
}

// The [min, max] siblings of a median figure: "x.median" -> "x.min"/"x.max", "x_median" ->
// "x_min"/"x_max".
std::optional<Summary> range_of(const std::map<std::string, double>& figures,
                                const std::string& figure) {
  for (const char* separator : {".", "_"}) {
    const std::string suffix = std::string(separator) + "median";
    if (figure.size() <= suffix.size() ||
        figure.compare(figure.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const std::string stem = figure.substr(0, figure.size() - suffix.size()) + separator;
    const auto min = figures.find(stem + "min");
    const auto max = figures.find(stem + "max");
    if (min != figures.end() && max != figures.end() && std::isfinite(min->second) &&
        std::isfinite(max->second))
      return Summary{figures.at(figure), min->second, max->second};
  }
  return std::nullopt;
}

std::vector<std::string> headline_of(const Json& document) {
  std::vector<std::string> headline;
  if (document.contains("headline") && document["headline"].is_array())
    for (const Json& figure : document["headline"])
      if (figure.is_string()) headline.push_back(figure.get<std::string>());
  return headline;
}

const Json& results_of(const Json& document, const char* which) {
  if (!document.is_object() || !document.contains("results") || !document["results"].is_array())
    throw std::invalid_argument(fmt::format(
        "the {} file is not a troupe-bench result (no \"results\" list; write one with --json)",
        which));
  return document["results"];
}

std::string ratio_text(double value) {
  if (std::isnan(value)) return "-";
  return value < 0.1 ? fmt::format("{:.4f}x", value) : fmt::format("{:.3f}x", value);
}

std::string number_text(double value) {
  if (std::isnan(value)) return "-";
  return std::fabs(value) >= 1000 ? format_si(value) : fmt::format("{:.4g}", value);
}

}  // namespace

Comparison compare_results(const Json& base, const Json& next, bool all_figures) {
  const Json& base_results = results_of(base, "BASE");
  const Json& next_results = results_of(next, "NEW");
  Comparison comparison;
  comparison.suite = next.value("suite", std::string("?"));
  if (base.value("suite", std::string("?")) != comparison.suite)
    throw std::invalid_argument(
        fmt::format("BASE holds suite '{}' and NEW suite '{}': compare "
                    "results of the same suite",
                    base.value("suite", std::string("?")), comparison.suite));
  comparison.simulated = base.value("simulated", false) || next.value("simulated", false);
  if (base.value("simulated", false) != next.value("simulated", false))
    comparison.notes.push_back("one file is simulated and the other is not");
  if (base.contains("machine") && next.contains("machine")) {
    for (const char* fact : {"cpu_model", "logical_cores", "build_type", "git_commit"}) {
      const Json a = base["machine"].value(fact, Json()), b = next["machine"].value(fact, Json());
      if (a != b)
        comparison.notes.push_back(fmt::format("{}: {} -> {}", fact, value_text(a), value_text(b)));
    }
  }
  if (base.value("config", Json()) != next.value("config", Json()))
    comparison.notes.push_back("the configurations differ (see \"config\" in the files)");

  const std::vector<std::string> headline = headline_of(next);
  std::map<std::string, const Json*> base_by_key;
  for (const Json& result : base_results)
    base_by_key[result_key(result, axes_of(base, result))] = &result;
  std::map<std::string, bool> matched;
  for (const Json& result : next_results) {
    const std::vector<std::string> axes = axes_of(next, result);
    const std::string key = result_key(result, axes);
    const auto found = base_by_key.find(key);
    if (found == base_by_key.end()) {
      comparison.only_in_new.push_back(key);
      continue;
    }
    matched[key] = true;
    const auto next_figures = figures_of(result, axes);
    const auto base_figures = figures_of(*found->second, axes);
    std::vector<std::string> names;
    if (!all_figures && !headline.empty()) {
      names = headline;
    } else {
      for (const auto& [name, value] : next_figures) names.push_back(name);
    }
    for (const std::string& name : names) {
      const auto a = base_figures.find(name);
      const auto b = next_figures.find(name);
      if (a == base_figures.end() || b == next_figures.end()) continue;
      if (std::isnan(a->second) && std::isnan(b->second)) continue;
      ComparedFigure figure{key, name, a->second, b->second, ratio(b->second, a->second), ""};
      const auto base_range = range_of(base_figures, name);
      const auto next_range = range_of(next_figures, name);
      if (base_range && next_range)
        figure.ranges = ranges_overlap(*base_range, *next_range) ? "overlap" : "distinct";
      comparison.figures.push_back(std::move(figure));
    }
  }
  for (const auto& [key, result] : base_by_key)
    if (!matched.count(key)) comparison.only_in_base.push_back(key);
  return comparison;
}

void print_comparison(std::ostream& out, const Comparison& comparison) {
  out << "compare: suite " << comparison.suite << (comparison.simulated ? " (simulated)" : "")
      << ", NEW / BASE (lower is better for latencies, *_ms, *_ns, *_us; 'overlap': the\n"
         "repetitions' [min, max] ranges share a point, the difference may be noise)\n";
  for (const std::string& note : comparison.notes) out << "note: " << note << '\n';
  TextTable table({{"result", Align::Left},
                   {"figure", Align::Left},
                   {"base"},
                   {"new"},
                   {"new/base"},
                   {"ranges", Align::Left}});
  std::string previous;
  for (const ComparedFigure& figure : comparison.figures) {
    table.add_row({figure.result == previous ? "" : figure.result, figure.figure,
                   number_text(figure.base), number_text(figure.next), ratio_text(figure.ratio),
                   figure.ranges});
    previous = figure.result;
  }
  table.print(out);
  for (const std::string& key : comparison.only_in_base) out << "only in BASE: " << key << '\n';
  for (const std::string& key : comparison.only_in_new) out << "only in NEW: " << key << '\n';
  out.flush();
}

Json read_results_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open '" + path + "'");
  try {
    return Json::parse(in);
  } catch (const Json::exception& error) {
    throw std::runtime_error("'" + path + "' is not JSON: " + error.what());
  }
}

int compare_main(const std::vector<std::string>& args, std::ostream& out) {
  std::vector<std::string> files;
  bool all_figures = false;
  for (const std::string& arg : args) {
    if (arg == "--help" || arg == "-h") {
      out << "usage: troupe-bench compare BASE.json NEW.json [--all]\n"
             "Matches the results of two --json files of one suite and prints NEW / BASE for\n"
             "the headline figures (--all: every figure).\n";
      return 0;
    }
    if (arg == "--all") {
      all_figures = true;
    } else if (arg.rfind("--", 0) == 0) {
      throw OptionsError("unknown option '" + arg +
                         "' (usage: compare BASE.json NEW.json [--all])");
    } else {
      files.push_back(arg);
    }
  }
  if (files.size() != 2)
    throw OptionsError("expected two files: compare BASE.json NEW.json [--all]");
  const Json base = read_results_file(files[0]);
  const Json next = read_results_file(files[1]);
  try {
    print_comparison(out, compare_results(base, next, all_figures));
  } catch (const std::invalid_argument& error) {
    throw std::runtime_error(error.what());
  }
  return 0;
}

}  // namespace troupe
