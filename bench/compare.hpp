#pragma once
// `troupe-bench compare BASE.json NEW.json [--all]`: the "save a baseline, change, compare"
// workflow. Results of the two files (any suite's --json) are matched by their axes (the
// document's "axes" list, e.g. batch_size, runtime, sync; else every text or boolean field
// plus threads); for each match the headline figures (the document's "headline" list, or
// with --all every number) are printed with NEW / BASE and, where a figure carries a
// [min, max] range in both files, whether the ranges overlap (a noise hint). Results present
// in only one file are listed. Pure functions over parsed documents; not thread-safe I/O.

#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace troupe {

struct ComparedFigure {
  std::string result;  // the axes, e.g. "batch_size=8 runtime=actors sync=parking"
  std::string figure;  // dotted path, e.g. "ttft_ms.p99"
  double base = 0;
  double next = 0;
  double ratio = 0;    // next / base; NaN when base is 0 or either is missing
  std::string ranges;  // "overlap", "distinct" or "" when no range is known
};

struct Comparison {
  std::string suite;
  bool simulated = false;
  std::vector<ComparedFigure> figures;
  std::vector<std::string> only_in_base, only_in_new;
  std::vector<std::string> notes;  // machine or configuration differences
};

// Throws std::invalid_argument when the documents are not results of one suite.
Comparison compare_results(const nlohmann::json& base, const nlohmann::json& next,
                           bool all_figures);
void print_comparison(std::ostream& out, const Comparison& comparison);

// Reads a results file; throws std::runtime_error naming the path when it cannot be read or
// is not JSON.
nlohmann::json read_results_file(const std::string& path);

// Entry point used by troupe-bench. Throws OptionsError on bad arguments.
int compare_main(const std::vector<std::string>& args, std::ostream& out);

}  // namespace troupe
