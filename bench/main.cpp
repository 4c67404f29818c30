// troupe-bench: the measurement program (see bench/suites.hpp).
#include <iostream>
#include <string>
#include <vector>

#include "bench/suites.hpp"

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  return troupe::run_bench(args, std::cout, std::cerr);
}
