// troupe-bench kvcache: a very short run of every sync mode at both granularities yields
// finite, consistent figures and valid JSON; bad flags are refused with status 2.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "bench/suites.hpp"

namespace troupe {
namespace {

TEST(KvcacheSuite, ShortRunCoversEveryModeAndGranularity) {
  const auto json_path = std::filesystem::temp_directory_path() /
                         ("troupe_kvcache_suite_test_" + std::to_string(getpid()) + ".json");
  std::ostringstream out, err;
  const int status = run_bench({"kvcache", "--threads", "1,3", "--seconds", "0.03",
                                "--repetitions", "1", "--kv-granularity", "step,token", "--json",
                                json_path.string()},
                               out, err);
  ASSERT_EQ(status, 0) << err.str() << out.str();
  std::ifstream file(json_path);
  const nlohmann::json document = nlohmann::json::parse(file);
  const auto& results = document.at("results");
  ASSERT_EQ(results.size(), 7u * 2u * 2u);  // modes x thread counts x granularities
  std::set<std::string> modes;
  for (const auto& record : results) {
    modes.insert(record.at("sync").get<std::string>());
    const double median = record.at("ops_per_s_median");
    EXPECT_GT(record.at("ops_per_s_min").get<double>(), 0) << record.dump();
    EXPECT_LE(record.at("ops_per_s_min").get<double>(), median);
    EXPECT_LE(median, record.at("ops_per_s_max").get<double>());
    EXPECT_TRUE(std::isfinite(record.at("ratio_to_std").get<double>())) << record.dump();
  }
  EXPECT_EQ(modes, (std::set<std::string>{"std", "std-rw", "parking", "parking-rw", "futex",
                                          "spin", "actor"}));
  std::filesystem::remove(json_path);
}

TEST(KvcacheSuite, BadFlagsAreRefusedWithUsageStatus) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"kvcache", "--mix", "lookup:70,append:oops"},
        std::vector<std::string>{"kvcache", "--kv-granularity", "block"},
        std::vector<std::string>{"kvcache", "--threads", "0"},
        std::vector<std::string>{"kvcache", "--sync", "mutex"}}) {
    std::ostringstream out, err;
    EXPECT_EQ(run_bench(args, out, err), 2) << args[1] << " " << args[2];
    EXPECT_FALSE(err.str().empty());
  }
}

}  // namespace
}  // namespace troupe
