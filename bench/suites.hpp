#pragma once
// The command line of troupe-bench: `troupe-bench SUITE [options]`. Each suite is one entry
// of the table in suites.cpp (name, one-line summary, entry point); a new suite adds a row.
// run_bench never lets an exception escape: bad flags print a message to err and return 2,
// a failed measurement or unwritable file returns 1.

#include <iosfwd>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

struct Suite {
  std::string_view name;
  std::string_view summary;
  // Parses args (those after the suite name), runs, prints to out; returns the exit status.
  // Throws OptionsError on bad flags, std::exception on failures.
  int (*run)(const std::vector<std::string>& args, std::ostream& out);
};

std::span<const Suite> bench_suites();

int run_bench(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace troupe
