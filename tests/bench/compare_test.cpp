#include "bench/compare.hpp"

#include <cmath>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "bench/locks_suite.hpp"
#include "bench/report.hpp"
#include "bench/suites.hpp"
#include "tests/util/scratch_file.hpp"

namespace troupe {
namespace {

using Json = nlohmann::json;

Json locks_document(double std_median, double std_min, double std_max) {
  return Json{
      {"suite", "locks"},
      {"axes", {"sync", "threads"}},
      {"headline", {"ops_per_s_median", "ns_per_op"}},
      {"results",
       {{{"sync", "std"},
         {"threads", 2},
         {"ops_per_s_median", std_median},
         {"ops_per_s_min", std_min},
         {"ops_per_s_max", std_max},
         {"ns_per_op", 10.0},
         {"min_share", 0.5}},
        {{"sync", "spin"}, {"threads", 2}, {"ops_per_s_median", 50.0}, {"ns_per_op", 20.0}}}}};
}

const ComparedFigure* find(const Comparison& comparison, const std::string& result,
                           const std::string& figure) {
  for (const ComparedFigure& f : comparison.figures)
    if (f.result == result && f.figure == figure) return &f;
  return nullptr;
}

TEST(Compare, RatiosOfHeadlineFiguresWithTheRangeHint) {
  Json base = locks_document(100, 90, 110);
  Json next = locks_document(150, 140, 160);
  next["results"][1]["sync"] = "futex";  // spin only in BASE, futex only in NEW
  const Comparison comparison = compare_results(base, next, false);
  ASSERT_EQ(comparison.figures.size(), 2u);  // std: the two headline figures
  const ComparedFigure* ops = find(comparison, "sync=std threads=2", "ops_per_s_median");
  ASSERT_NE(ops, nullptr);
  EXPECT_DOUBLE_EQ(ops->ratio, 1.5);
  EXPECT_EQ(ops->ranges, "distinct");  // [90, 110] and [140, 160]
  const ComparedFigure* ns = find(comparison, "sync=std threads=2", "ns_per_op");
  ASSERT_NE(ns, nullptr);
  EXPECT_DOUBLE_EQ(ns->ratio, 1.0);
  EXPECT_EQ(ns->ranges, "");  // no range known
  EXPECT_EQ(comparison.only_in_base, std::vector<std::string>{"sync=spin threads=2"});
  EXPECT_EQ(comparison.only_in_new, std::vector<std::string>{"sync=futex threads=2"});

  const Comparison overlapping = compare_results(base, locks_document(105, 100, 120), false);
  EXPECT_EQ(find(overlapping, "sync=std threads=2", "ops_per_s_median")->ranges, "overlap");
}

TEST(Compare, AllFiguresAndNestedRanges) {
  const Json base{{"suite", "serve"},
                  {"axes", {"batch_size", "sync"}},
                  {"headline", {"tok.median"}},
                  {"results",
                   {{{"batch_size", 4},
                     {"sync", "std"},
                     {"tok", {{"median", 8.0}, {"min", 6.0}, {"max", 9.0}}},
                     {"ttft_ms", {{"p99", 40.0}}}}}}};
  Json next = base;
  next["results"][0]["tok"] = {{"median", 10.0}, {"min", 9.0}, {"max", 12.0}};
  next["results"][0]["ttft_ms"]["p99"] = 30.0;
  const Comparison headline = compare_results(base, next, false);
  ASSERT_EQ(headline.figures.size(), 1u);
  EXPECT_DOUBLE_EQ(headline.figures[0].ratio, 1.25);
  EXPECT_EQ(headline.figures[0].ranges, "overlap");  // [6, 9] and [9, 12] touch

  const Comparison all = compare_results(base, next, true);
  const ComparedFigure* ttft = find(all, "batch_size=4 sync=std", "ttft_ms.p99");
  ASSERT_NE(ttft, nullptr);
  EXPECT_DOUBLE_EQ(ttft->ratio, 0.75);
  EXPECT_NE(find(all, "batch_size=4 sync=std", "tok.min"), nullptr);
}

TEST(Compare, RefusesDifferentSuitesAndNonResults) {
  Json other = locks_document(1, 1, 1);
  other["suite"] = "kvcache";
  EXPECT_THROW(compare_results(locks_document(1, 1, 1), other, false), std::invalid_argument);
  EXPECT_THROW(compare_results(Json{{"suite", "locks"}}, locks_document(1, 1, 1), false),
               std::invalid_argument);
}

TEST(Compare, LocksJsonRoundTripThroughFiles) {
  LocksConfig config;
  config.threads = {4};
  config.sync = {SyncMode::Std, SyncMode::Parking};
  LocksRow std_row;
  std_row.sync = SyncMode::Std;
  std_row.threads = 4;
  std_row.ops_per_s = {2e6, 1.8e6, 2.2e6};
  std_row.ns_per_op = 500;
  LocksRow parking_row = std_row;
  parking_row.sync = SyncMode::Parking;
  parking_row.ops_per_s = {3e6, 2.9e6, 3.1e6};
  parking_row.ns_per_op = 1e9 / 3e6;
  test::ScratchFile base_file, next_file;
  write_json_file(base_file.path(), locks_json(config, {std_row, parking_row}));
  parking_row.ops_per_s = {6e6, 5.5e6, 6.5e6};
  write_json_file(next_file.path(), locks_json(config, {std_row, parking_row}));

  const Comparison comparison = compare_results(read_results_file(base_file.path()),
                                                read_results_file(next_file.path()), false);
  EXPECT_EQ(comparison.suite, "locks");
  const ComparedFigure* std_ops = find(comparison, "sync=std threads=4", "ops_per_s_median");
  const ComparedFigure* parking_ops =
      find(comparison, "sync=parking threads=4", "ops_per_s_median");
  ASSERT_NE(std_ops, nullptr);
  ASSERT_NE(parking_ops, nullptr);
  EXPECT_DOUBLE_EQ(std_ops->ratio, 1.0);
  EXPECT_EQ(std_ops->ranges, "overlap");
  EXPECT_DOUBLE_EQ(parking_ops->ratio, 2.0);
  EXPECT_EQ(parking_ops->ranges, "distinct");

  std::ostringstream out, err;
  EXPECT_EQ(run_bench({"compare", base_file.path(), next_file.path()}, out, err), 0) << err.str();
  EXPECT_NE(out.str().find("2.000x"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("distinct"), std::string::npos);
}

TEST(Compare, CommandLineMistakesAreUsageErrors) {
  std::ostringstream out, err;
  EXPECT_EQ(run_bench({"compare", "only-one.json"}, out, err), 2);
  EXPECT_EQ(run_bench({"compare", "a.json", "b.json", "--bogus"}, out, err), 2);
  EXPECT_EQ(run_bench({"compare", "/nonexistent/a.json", "/nonexistent/b.json"}, out, err), 1);
  EXPECT_NE(err.str().find("cannot open '/nonexistent/a.json'"), std::string::npos) << err.str();
}

}  // namespace
}  // namespace troupe
