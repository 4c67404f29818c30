#include "bench/suites.hpp"

#include <array>
#include <exception>
#include <ostream>

#include "actors/options.hpp"
#include "bench/compare.hpp"
#include "bench/kvcache_suite.hpp"
#include "bench/load_suite.hpp"
#include "bench/locks_suite.hpp"
#include "bench/serve_suite.hpp"

namespace troupe {
namespace {

constexpr std::array<Suite, 5> suite_table{{
    {"locks", "lock contention across thread counts and sync modes", locks_main},
    {"kvcache", "one shared KV cache and model state under each sync mode", kvcache_main},
    {"serve", "the serving engine in-process under each runtime x sync mode", serve_main},
    {"load", "a running OpenAI-compatible server under open-loop HTTP load", load_main},
    {"compare", "NEW / BASE of two --json result files of one suite", compare_main},
}};

void print_usage(std::ostream& out) {
  out << "usage: troupe-bench SUITE [options]   (troupe-bench SUITE --help for its options)\n"
         "suites:\n";
  for (const Suite& suite : suite_table)
    out << "  " << suite.name << std::string(10 - std::min<std::size_t>(suite.name.size(), 9), ' ')
        << suite.summary << '\n';
}

}  // namespace

std::span<const Suite> bench_suites() { return suite_table; }

int run_bench(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  if (args.empty()) {
    print_usage(err);
    return 2;
  }
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    print_usage(out);
    return 0;
  }
  const Suite* chosen = nullptr;
  for (const Suite& suite : suite_table)
    if (suite.name == args[0]) chosen = &suite;
  if (!chosen) {
    err << "troupe-bench: unknown suite '" << args[0] << "'\n";
    print_usage(err);
    return 2;
  }
  const std::string prefix = "troupe-bench " + std::string(chosen->name) + ": ";
  try {
    return chosen->run(std::vector<std::string>(args.begin() + 1, args.end()), out);
  } catch (const OptionsError& error) {
    err << prefix << error.what() << "\n(troupe-bench " << chosen->name
        << " --help lists the options)\n";
    return 2;
  } catch (const std::exception& error) {
    err << prefix << "error: " << error.what() << '\n';
    return 1;
  }
}

}  // namespace troupe
