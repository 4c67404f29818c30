// The `troupe` subcommands. Each takes its arguments (after the subcommand name), prints
// to stdout/stderr and returns the process exit status: 0 success, 1 runtime failure (the
// model cannot be loaded, ...), 2 a usage error (bad flag or value).
#pragma once

#include <string>
#include <vector>

namespace troupe::cli {

int generate(const std::vector<std::string>& args);
int chat(const std::vector<std::string>& args);
int tokenize(const std::vector<std::string>& args);
int inspect(const std::vector<std::string>& args);

}  // namespace troupe::cli
