#include "bench/locks_suite.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <unistd.h>

#include "bench/suites.hpp"

namespace troupe {
namespace {

std::filesystem::path temp_path(const std::string& name) {
  return std::filesystem::temp_directory_path() /
         ("troupe_locks_suite_test_" + std::to_string(getpid()) + "_" + name);
}

ContentionRun fake_run(std::vector<std::uint64_t> loops, double seconds, std::size_t bytes) {
  ContentionRun run;
  run.loops_per_thread = std::move(loops);
  run.elapsed_seconds = seconds;
  run.bytes_per_lock = bytes;
  return run;
}

TEST(ContentionRun, SharesAreRelativeToAnEqualSplit) {
  const ContentionRun run = fake_run({100, 300, 200, 200}, 2.0, 1);
  EXPECT_EQ(run.total_loops(), 800u);
  EXPECT_DOUBLE_EQ(run.ops_per_second(), 400);
  EXPECT_DOUBLE_EQ(run.min_share(), 0.5);  // fair split is 200 each
  EXPECT_DOUBLE_EQ(run.max_share(), 1.5);
}

TEST(LocksRows, DerivesMediansRatiosAndOverlapFromRepetitions) {
  // std: ops/s 100, 300, 200 -> median 200, range [100, 300]
  // parking: 500, 400, 600 -> median 500, range [400, 600]: 2.5x std, ranges distinct
  // spin: 250, 250, 150 -> median 250, range [150, 250]: 1.25x std, ranges overlap
  const std::vector<SyncMode> modes{SyncMode::Std, SyncMode::Parking, SyncMode::Spin};
  const std::vector<std::vector<ContentionRun>> runs{
      {fake_run({50, 50}, 1, 40), fake_run({100, 200}, 1, 40), fake_run({80, 120}, 1, 40)},
      {fake_run({250, 250}, 1, 1), fake_run({200, 200}, 1, 1), fake_run({300, 300}, 1, 1)},
      {fake_run({125, 125}, 1, 4), fake_run({250, 250}, 2, 4), fake_run({75, 75}, 1, 4)}};
  const std::vector<LocksRow> rows = locks_rows(2, modes, runs);
  ASSERT_EQ(rows.size(), 3u);

  EXPECT_DOUBLE_EQ(rows[0].ops_per_s.median, 200);
  EXPECT_DOUBLE_EQ(rows[0].ops_per_s.min, 100);
  EXPECT_DOUBLE_EQ(rows[0].ops_per_s.max, 300);
  EXPECT_DOUBLE_EQ(rows[0].ns_per_op, 5e6);
  EXPECT_DOUBLE_EQ(rows[0].ratio_to_std, 1.0);
  EXPECT_FALSE(rows[0].overlaps_std.has_value());
  // shares per repetition: (1, 1), (0.667, 1.333), (0.8, 1.2)
  EXPECT_DOUBLE_EQ(rows[0].min_share, 0.8);
  EXPECT_DOUBLE_EQ(rows[0].max_share, 1.2);
  EXPECT_NEAR(rows[0].min_share_worst, 2.0 / 3.0, 1e-12);
  EXPECT_EQ(rows[0].bytes_per_lock, 40u);

  EXPECT_DOUBLE_EQ(rows[1].ops_per_s.median, 500);
  EXPECT_DOUBLE_EQ(rows[1].ratio_to_std, 2.5);
  EXPECT_EQ(rows[1].overlaps_std, false);
  EXPECT_DOUBLE_EQ(rows[1].min_share, 1.0);

  EXPECT_DOUBLE_EQ(rows[2].ops_per_s.median, 250);
  EXPECT_DOUBLE_EQ(rows[2].ratio_to_std, 1.25);
  EXPECT_EQ(rows[2].overlaps_std, true);
}

TEST(LocksRows, NoStdMeansNoRatio) {
  const std::vector<LocksRow> rows =
      locks_rows(1, {SyncMode::Spin}, {{fake_run({10}, 1, 4)}});
  EXPECT_TRUE(std::isnan(rows[0].ratio_to_std));
  EXPECT_FALSE(rows[0].overlaps_std.has_value());
}

TEST(ReadChooser, FollowsTheRatio) {
  contention_detail::ReadChooser never(0.0, 0);
  contention_detail::ReadChooser always(1.0, 0);
  contention_detail::ReadChooser quarter(0.25, 3);
  int reads = 0;
  for (int i = 0; i < 100'000; ++i) {
    EXPECT_FALSE(never.next_is_read());
    EXPECT_TRUE(always.next_is_read());
    reads += quarter.next_is_read();
  }
  EXPECT_NEAR(reads / 100'000.0, 0.25, 0.01);
}

const std::vector<std::string> result_keys{
    "sync",          "threads",   "ops_per_s_median", "ops_per_s_min",
    "ops_per_s_max", "ns_per_op", "min_share",        "max_share",
    "bytes_per_lock", "ratio_to_std"};

TEST(LocksSuite, ShortRunGivesConsistentFiguresForEveryMode) {
  const auto json_path = temp_path("locks.json");
  const auto csv_path = temp_path("locks.csv");
  std::ostringstream out;
  std::ostringstream err;
  const int status = run_bench({"locks", "--threads", "1,2", "--seconds", "0.02",
                                "--repetitions", "2", "--read-ratio", "0.5", "--json",
                                json_path.string(), "--csv", csv_path.string()},
                               out, err);
  ASSERT_EQ(status, 0) << err.str();
  EXPECT_NE(out.str().find("locks: 2 threads"), std::string::npos) << out.str();

  std::ifstream json_file(json_path);
  const nlohmann::json document = nlohmann::json::parse(json_file);
  EXPECT_EQ(document.at("suite"), "locks");
  EXPECT_EQ(document.at("config").at("repetitions"), 2);
  EXPECT_DOUBLE_EQ(document.at("config").at("read_ratio").get<double>(), 0.5);
  EXPECT_FALSE(document.at("machine").at("cpu_model").get<std::string>().empty());
  EXPECT_GE(document.at("machine").at("logical_cores").get<int>(), 1);
  EXPECT_TRUE(document.at("machine").contains("git_commit"));

  const auto& results = document.at("results");
  ASSERT_EQ(results.size(), 14u);  // 7 modes x 2 thread counts
  std::set<std::pair<std::string, int>> seen;
  for (const auto& record : results) {
    for (const std::string& key : result_keys)
      ASSERT_TRUE(record.contains(key)) << key << " missing in " << record.dump();
    const std::string sync = record.at("sync");
    const int threads = record.at("threads");
    seen.emplace(sync, threads);
    const double median = record.at("ops_per_s_median");
    const double min = record.at("ops_per_s_min");
    const double max = record.at("ops_per_s_max");
    EXPECT_GT(min, 0) << sync;
    EXPECT_LE(min, median) << sync;
    EXPECT_LE(median, max) << sync;
    EXPECT_NEAR(record.at("ns_per_op").get<double>() * median, 1e9, 1e-3) << sync;
    const double min_share = record.at("min_share");
    const double max_share = record.at("max_share");
    EXPECT_GE(min_share, 0) << sync;
    EXPECT_LE(min_share, 1.0 + 1e-12) << sync;
    EXPECT_GE(max_share, 1.0 - 1e-12) << sync;
    EXPECT_LE(max_share, threads + 1e-12) << sync;
    if (threads == 1) {
      EXPECT_DOUBLE_EQ(min_share, 1.0) << sync;
      EXPECT_DOUBLE_EQ(max_share, 1.0) << sync;
    }
    EXPECT_GT(record.at("bytes_per_lock").get<int>(), 0) << sync;
    EXPECT_TRUE(record.at("longest_wait_ns").is_null()) << sync << ": counters were off";
    EXPECT_TRUE(record.at("ratio_to_std").is_number()) << sync;
    if (sync == "std") {
      EXPECT_DOUBLE_EQ(record.at("ratio_to_std").get<double>(), 1.0);
      EXPECT_EQ(record.at("bytes_per_lock").get<std::size_t>(), sizeof(std::mutex));
    }
    if (sync == "parking") {  // issue 2: ParkingMutex is 1 byte, FutexMutex 4
      EXPECT_EQ(record.at("bytes_per_lock").get<std::size_t>(), 1u);
    }
    if (sync == "futex") {
      EXPECT_EQ(record.at("bytes_per_lock").get<std::size_t>(), 4u);
    }
    if (sync == "actor") {  // more than its 8-byte handle: the actor object itself
      EXPECT_GT(record.at("bytes_per_lock").get<std::size_t>(), 8u);
    }
    if (sync == "std-rw") {
      EXPECT_EQ(record.at("bytes_per_lock").get<std::size_t>(), sizeof(std::shared_mutex));
    }
  }
  for (const char* sync : {"std", "std-rw", "parking", "parking-rw", "futex", "spin", "actor"})
    for (int threads : {1, 2}) EXPECT_TRUE(seen.count({sync, threads})) << sync << threads;

  std::ifstream csv_file(csv_path);
  std::string line;
  std::getline(csv_file, line);
  EXPECT_EQ(line.rfind("sync,threads,ops_per_s_median,ops_per_s_min,ops_per_s_max,ns_per_op,"
                       "min_share,max_share,",
                       0),
            0u)
      << line;
  int data_lines = 0;
  while (std::getline(csv_file, line)) ++data_lines;
  EXPECT_EQ(data_lines, 14);
  std::filesystem::remove(json_path);
  std::filesystem::remove(csv_path);
}

TEST(LocksSuite, CountersReportTheLongestWait) {
  const auto json_path = temp_path("counters.json");
  std::ostringstream out;
  std::ostringstream err;
  ASSERT_EQ(run_bench({"locks", "--threads", "2", "--sync", "std,parking,actor", "--seconds",
                       "0.02", "--repetitions", "1", "--counters", "--json", json_path.string()},
                      out, err),
            0)
      << err.str();
  std::ifstream json_file(json_path);
  const nlohmann::json document = nlohmann::json::parse(json_file);
  EXPECT_EQ(document.at("config").at("counters"), true);
  ASSERT_EQ(document.at("results").size(), 3u);
  for (const auto& record : document.at("results")) {
    ASSERT_TRUE(record.at("longest_wait_ns").is_number()) << record.dump();
    EXPECT_GE(record.at("longest_wait_ns").get<double>(), 0) << record.dump();
    EXPECT_LT(record.at("longest_wait_ns").get<double>(), 1e9) << record.dump();
  }
  // The actor's figure is a round trip, never zero.
  EXPECT_GT(document.at("results")[2].at("longest_wait_ns").get<double>(), 0);
  std::filesystem::remove(json_path);
}

struct BadFlags {
  std::vector<std::string> args;
  std::string expected_in_message;
};

class LocksSuiteBadFlags : public ::testing::TestWithParam<BadFlags> {};

TEST_P(LocksSuiteBadFlags, ExitWithStatusTwoAndNameTheProblem) {
  std::vector<std::string> args{"locks"};
  args.insert(args.end(), GetParam().args.begin(), GetParam().args.end());
  // Should a bad flag be accepted by mistake, the run it starts stays short.
  const std::vector<std::pair<std::string, std::string>> short_run{
      {"--threads", "1"}, {"--sync", "spin"}, {"--seconds", "0.001"}, {"--repetitions", "1"}};
  for (const auto& [flag, value] : short_run) {
    if (std::find(GetParam().args.begin(), GetParam().args.end(), flag) == GetParam().args.end()) {
      args.push_back(flag);
      args.push_back(value);
    }
  }
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(run_bench(args, out, err), 2);
  EXPECT_NE(err.str().find(GetParam().expected_in_message), std::string::npos) << err.str();
  EXPECT_EQ(out.str(), "");
}

INSTANTIATE_TEST_SUITE_P(
    Flags, LocksSuiteBadFlags,
    ::testing::Values(BadFlags{{"--threads", "1,x"}, "--threads: 'x'"},
                      BadFlags{{"--threads", "0"}, "--threads: '0'"},
                      BadFlags{{"--sync", "std,parkin"}, "'parkin'"},
                      BadFlags{{"--seconds", "-1"}, "--seconds"},
                      BadFlags{{"--seconds", "soon"}, "seconds"},
                      BadFlags{{"--repetitions", "0"}, "--repetitions"},
                      BadFlags{{"--read-ratio", "1.5"}, "--read-ratio"},
                      BadFlags{{"--bogus"}, "--bogus"},
                      BadFlags{{"--counters", "yes"}, "unexpected argument"},
                      BadFlags{{"--config", "/nonexistent/a.conf"}, "/nonexistent/a.conf"},
                      BadFlags{{"stray"}, "unexpected argument"}));

TEST(TroupeBench, UnknownSuiteAndMissingSuiteAreUsageErrors) {
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(run_bench({"lockz"}, out, err), 2);
  EXPECT_NE(err.str().find("unknown suite 'lockz'"), std::string::npos);
  EXPECT_EQ(run_bench({}, out, err), 2);
}

TEST(TroupeBench, HelpListsSuitesAndOptions) {
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(run_bench({"--help"}, out, err), 0);
  EXPECT_NE(out.str().find("locks"), std::string::npos);
  std::ostringstream suite_help;
  EXPECT_EQ(run_bench({"locks", "--help"}, suite_help, err), 0);
  for (const char* flag : {"--threads", "--sync", "--work-inside", "--work-outside", "--seconds",
                           "--repetitions", "--read-ratio", "--json", "--csv", "--config"})
    EXPECT_NE(suite_help.str().find(flag), std::string::npos) << flag;
}

TEST(TroupeBench, UnwritableJsonIsAFailureNotACrash) {
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(run_bench({"locks", "--threads", "1", "--sync", "spin", "--seconds", "0.001",
                       "--repetitions", "1", "--json", "/nonexistent-dir/x.json"},
                      out, err),
            1);
  EXPECT_NE(err.str().find("/nonexistent-dir/x.json"), std::string::npos) << err.str();
}

}  // namespace
}  // namespace troupe
