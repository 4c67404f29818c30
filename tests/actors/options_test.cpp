#include "actors/options.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include <gtest/gtest.h>
#include <unistd.h>

namespace troupe {
namespace {

namespace po = boost::program_options;

// Expects f() to throw OptionsError whose message contains every one of parts.
template <class F>
void expect_options_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "expected OptionsError";
  } catch (const OptionsError& error) {
    for (const std::string& part : parts)
      EXPECT_NE(std::string(error.what()).find(part), std::string::npos)
          << "'" << part << "' not in: " << error.what();
  }
}

// Sets an environment variable for the lifetime of the object, then restores it.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      setenv(name_, old_->c_str(), 1);
    else
      unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

std::filesystem::path write_temp_file(const std::string& name, const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("troupe_options_test_" + std::to_string(getpid()) + "_" + name);
  std::ofstream(path) << text;
  return path;
}

po::options_description bench_like_description() {
  po::options_description description;
  add_general_options(description);
  add_sync_option(description, "std,parking");
  description.add_options()
      ("threads", po::value<std::string>()->default_value("1,2"), "thread counts")
      ("seconds", po::value<double>()->default_value(1.0), "seconds")
      ("repetitions", po::value<int>()->default_value(15), "repetitions");
  return description;
}

TEST(ListOptions, ParseIntegersWithSpaces) {
  EXPECT_EQ(parse_int_list("threads", "1,2,8", 1, 64), (std::vector<int>{1, 2, 8}));
  EXPECT_EQ(parse_int_list("threads", " 16 , 32", 1, 64), (std::vector<int>{16, 32}));
}

TEST(ListOptions, BadIntegerElementsNameOptionAndElement) {
  expect_options_error([] { parse_int_list("threads", "1,x,8", 1, 64); },
                       {"--threads", "'x'", "not a whole number", "1,x,8"});
  expect_options_error([] { parse_int_list("threads", "2.5", 1, 64); }, {"'2.5'"});
  expect_options_error([] { parse_int_list("threads", "0", 1, 64); }, {"'0'", "[1, 64]"});
  expect_options_error([] { parse_int_list("threads", "99999999999999999999", 1, 64); },
                       {"not a whole number"});
  expect_options_error([] { parse_int_list("threads", "1,,2", 1, 64); }, {"empty element"});
  expect_options_error([] { parse_int_list("threads", "", 1, 64); }, {"empty element"});
  expect_options_error([] { parse_int_list("threads", "4,4", 1, 64); }, {"'4'", "listed twice"});
}

TEST(ListOptions, SyncModes) {
  EXPECT_EQ(parse_sync_list("sync", "std,std-rw,parking,parking-rw,futex,spin,actor"),
            (std::vector<SyncMode>{SyncMode::Std, SyncMode::StdRw, SyncMode::Parking,
                                   SyncMode::ParkingRw, SyncMode::Futex, SyncMode::Spin,
                                   SyncMode::Actor}));
  expect_options_error([] { parse_sync_list("sync", "std,parkin"); },
                       {"--sync", "'parkin'", "expected one of std, std-rw, parking"});
  EXPECT_EQ(sync_list_text(std::vector<SyncMode>{SyncMode::Futex, SyncMode::ParkingRw}, ","),
            "futex,parking-rw");
}

TEST(ListOptions, Runtimes) {
  po::options_description description;
  add_sync_option(description, "parking");
  add_runtime_option(description, "actors,threads");
  const auto values = parse_options(description, {"--runtime", "threads"});
  const SyncOptions sync = read_sync_options(values);
  EXPECT_EQ(sync.sync, std::vector<SyncMode>{SyncMode::Parking});
  EXPECT_EQ(sync.runtime, std::vector<Runtime>{Runtime::Threads});
  expect_options_error(
      [&] { read_sync_options(parse_options(description, {"--runtime", "fibers"})); },
      {"--runtime", "'fibers'"});
}

TEST(ListOptions, NoRuntimeOptionMeansNoRuntimes) {
  po::options_description description;
  add_sync_option(description, "spin");
  EXPECT_TRUE(read_sync_options(parse_options(description, {})).runtime.empty());
}

TEST(ParseOptions, DefaultsFlagsAndRanges) {
  const auto description = bench_like_description();
  const auto values = parse_options(description, {"--seconds=0.25", "--sync", "futex"});
  EXPECT_DOUBLE_EQ(read_in_range(values, "seconds", 0.001, 10.0), 0.25);
  EXPECT_EQ(read_in_range(values, "repetitions", 1, 100), 15);
  EXPECT_EQ(read_sync_options(values).sync, std::vector<SyncMode>{SyncMode::Futex});
  expect_options_error([&] { read_in_range(values, "repetitions", 20, 100); },
                       {"--repetitions", "15", "[20, 100]"});
}

TEST(ParseOptions, CommandLineMistakesAreOptionsErrors) {
  const auto description = bench_like_description();
  expect_options_error([&] { parse_options(description, {"--nope", "1"}); }, {"--nope"});
  expect_options_error([&] { parse_options(description, {"--repetitions", "many"}); },
                       {"repetitions", "many"});
  expect_options_error([&] { parse_options(description, {"--sec", "2"}); }, {"--sec"});
  expect_options_error([&] { parse_options(description, {"stray"}); }, {"unexpected argument"});
  EXPECT_TRUE(help_requested(parse_options(description, {"--help"})));
  EXPECT_FALSE(help_requested(parse_options(description, {})));
}

TEST(ConfigFile, FileFillsUnsetOptionsAndFlagsOverrideIt) {
  const auto path = write_temp_file("override.conf",
                                    "# a profile\n"
                                    "threads = 1, 4\n"
                                    "seconds = 0.5\n"
                                    "sync = spin\n");
  const auto description = bench_like_description();
  const auto values =
      parse_options(description, {"--config", path.string(), "--seconds", "2"});
  EXPECT_DOUBLE_EQ(values.at("seconds").as<double>(), 2.0);               // flag wins
  EXPECT_EQ(parse_int_list("threads", values.at("threads").as<std::string>(), 1, 64),
            (std::vector<int>{1, 4}));                                    // from the file
  EXPECT_EQ(read_sync_options(values).sync, std::vector<SyncMode>{SyncMode::Spin});
  EXPECT_EQ(values.at("repetitions").as<int>(), 15);                      // default
  std::filesystem::remove(path);
}

TEST(ConfigFile, UnknownKeyBadValueAndMissingFileNameTheProblem) {
  const auto description = bench_like_description();
  const auto unknown = write_temp_file("unknown.conf", "bogus-key = 3\n");
  expect_options_error([&] { parse_options(description, {"--config", unknown.string()}); },
                       {unknown.string(), "bogus-key"});
  const auto bad_value = write_temp_file("bad.conf", "repetitions = many\n");
  expect_options_error([&] { parse_options(description, {"--config", bad_value.string()}); },
                       {bad_value.string(), "repetitions", "many"});
  const auto bad_list = write_temp_file("list.conf", "sync = std,spinn\n");
  expect_options_error(
      [&] { read_sync_options(parse_options(description, {"--config", bad_list.string()})); },
      {"--sync", "'spinn'"});
  expect_options_error(
      [&] { parse_options(description, {"--config", "/nonexistent/troupe.conf"}); },
      {"--config", "/nonexistent/troupe.conf"});
  std::filesystem::remove(unknown);
  std::filesystem::remove(bad_value);
  std::filesystem::remove(bad_list);
}

TEST(ModelOptions, DefaultPathFollowsFetchModel) {
  const std::string file = "SmolLM2-135M-Instruct.Q4_1.gguf";
  {
    ScopedEnv model_dir("TROUPE_MODEL_DIR", "/models");
    ScopedEnv cache("XDG_CACHE_HOME", "/cache");
    EXPECT_EQ(default_model_path(), std::filesystem::path("/models") / file);
  }
  {
    ScopedEnv model_dir("TROUPE_MODEL_DIR", nullptr);
    ScopedEnv cache("XDG_CACHE_HOME", "/cache");
    EXPECT_EQ(default_model_path(), std::filesystem::path("/cache/troupe/models") / file);
  }
  {
    ScopedEnv model_dir("TROUPE_MODEL_DIR", nullptr);
    ScopedEnv cache("XDG_CACHE_HOME", nullptr);
    ScopedEnv home("HOME", "/home/someone");
    EXPECT_EQ(default_model_path(),
              std::filesystem::path("/home/someone/.cache/troupe/models") / file);
  }
}

TEST(ModelOptions, ReadBackAndValidate) {
  po::options_description description;
  add_model_options(description);
  const ModelOptions options = read_model_options(parse_options(
      description, {"--model", "/m.gguf", "--backend", "sim", "--backend-threads", "3"}));
  EXPECT_EQ(options.model, std::filesystem::path("/m.gguf"));
  EXPECT_EQ(options.backend, "sim");
  EXPECT_EQ(options.backend_threads, 3);
  EXPECT_EQ(read_model_options(parse_options(description, {})).backend, "cpu");
  expect_options_error(
      [&] { read_model_options(parse_options(description, {"--backend", "gpu"})); },
      {"--backend", "gpu"});
  expect_options_error(
      [&] { read_model_options(parse_options(description, {"--backend-threads", "-1"})); },
      {"--backend-threads"});
}

}  // namespace
}  // namespace troupe
