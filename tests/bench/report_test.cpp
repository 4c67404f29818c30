#include "bench/report.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>
#include <unistd.h>

namespace troupe {
namespace {

std::filesystem::path temp_path(const std::string& name) {
  return std::filesystem::temp_directory_path() /
         ("troupe_report_test_" + std::to_string(getpid()) + "_" + name);
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(TextTable, PadsEveryColumnToItsWidestCell) {
  TextTable table({{"name", Align::Left}, {"value"}});
  table.add_row({"a", "1"});
  table.add_row({"longer", "12345"});
  std::ostringstream out;
  table.print(out);
  EXPECT_EQ(out.str(),
            "name    value\n"
            "a           1\n"
            "longer  12345\n");
}

TEST(TextTable, RejectsRowsOfTheWrongWidth) {
  TextTable table({{"a"}, {"b"}});
  EXPECT_THROW(table.add_row({"only one"}), std::invalid_argument);
}

TEST(Csv, QuotesOnlyFieldsThatNeedIt) {
  EXPECT_EQ(csv_line({"plain", "1.5", ""}), "plain,1.5,");
  EXPECT_EQ(csv_line({"a,b", "say \"hi\"", "two\nlines"}),
            "\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\"");
}

TEST(Csv, WritesHeaderAndRows) {
  const auto path = temp_path("rows.csv");
  write_csv_file(path, {"x", "y"}, {{"1", "2"}, {"3", "4"}});
  EXPECT_EQ(read_text(path), "x,y\n1,2\n3,4\n");
  std::filesystem::remove(path);
}

TEST(Json, WritesNonFiniteNumbersAsNull) {
  const auto path = temp_path("doc.json");
  write_json_file(path, {{"finite", 2.5}, {"nan", std::nan("")}, {"list", {1.0, INFINITY}}});
  const auto parsed = nlohmann::json::parse(read_text(path));
  EXPECT_DOUBLE_EQ(parsed.at("finite").get<double>(), 2.5);
  EXPECT_TRUE(parsed.at("nan").is_null());
  EXPECT_TRUE(parsed.at("list")[1].is_null());
  EXPECT_DOUBLE_EQ(parsed.at("list")[0].get<double>(), 1.0);
  std::filesystem::remove(path);
}

TEST(Files, UnwritablePathNamesThePath) {
  const std::filesystem::path path = "/nonexistent-dir/troupe/out.json";
  try {
    write_json_file(path, {{"a", 1}});
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find(path.string()), std::string::npos) << error.what();
  }
}

TEST(Format, SiSuffixesWithThreeSignificantDigits) {
  EXPECT_EQ(format_si(27'345'678), "27.3 M");
  EXPECT_EQ(format_si(812'400), "812 k");
  EXPECT_EQ(format_si(1'500'000'000), "1.50 G");
  EXPECT_EQ(format_si(9.5), "9.50");
  EXPECT_EQ(format_si(std::nan("")), "-");
  EXPECT_EQ(format_duration_ns(850), "850 ns");
  EXPECT_EQ(format_duration_ns(12'345), "12.3 us");
  EXPECT_EQ(format_duration_ns(4'560'000), "4.56 ms");
  EXPECT_EQ(format_duration_ns(1.2e9), "1.2 s");
  EXPECT_EQ(format_duration_ns(std::nan("")), "-");
  EXPECT_EQ(format_fixed(0.8349, 2), "0.83");
  EXPECT_EQ(format_fixed(std::nan(""), 2), "-");
}

}  // namespace
}  // namespace troupe
