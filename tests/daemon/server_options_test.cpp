#include "daemon/server_options.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "actors/options.hpp"
#include "tests/util/scratch_file.hpp"

namespace troupe {
namespace {

ServerOptions parse(const std::vector<std::string>& args) {
  return read_server_options(parse_options(server_options_description(), args));
}

std::string error_of(const std::vector<std::string>& args) {
  try {
    parse(args);
  } catch (const OptionsError& error) {
    return error.what();
  }
  return "accepted";
}

TEST(ServerOptions, DefaultsBindLoopbackWithOneRuntimeAndSyncMode) {
  const ServerOptions options = parse({});
  EXPECT_EQ(options.http.host, "127.0.0.1");
  EXPECT_EQ(options.http.port, 8080);
  EXPECT_TRUE(options.http.api_keys.empty());
  EXPECT_EQ(options.engine.runtime, Runtime::Actors);
  EXPECT_EQ(options.engine.sync, SyncMode::Parking);
  EXPECT_EQ(options.http.drain_timeout, std::chrono::seconds(30));
  EXPECT_FALSE(options.print_config);
}

TEST(ServerOptions, FlagsReachTheirFields) {
  const ServerOptions options =
      parse({"--port", "0", "--runtime", "threads", "--sync", "futex", "--api-keys", "a, b",
             "--max-body-bytes", "4096", "--idle-timeout", "0.5", "--drain-timeout", "2",
             "--max-seqs", "8", "--max-queued", "3", "--workers", "2", "--kv-mib", "64",
             "--context-tokens", "512", "--backend", "sim", "--sim-time-scale", "0",
             "--kv-granularity", "token", "--request-timeout", "1.5"});
  EXPECT_EQ(options.http.port, 0);
  EXPECT_EQ(options.engine.runtime, Runtime::Threads);
  EXPECT_EQ(options.engine.sync, SyncMode::Futex);
  EXPECT_EQ(options.http.api_keys, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(options.http.max_body_bytes, 4096u);
  EXPECT_EQ(options.http.idle_timeout, std::chrono::milliseconds(500));
  EXPECT_EQ(options.http.drain_timeout, std::chrono::seconds(2));
  EXPECT_EQ(options.engine.planner.max_seqs, 8);
  EXPECT_EQ(options.engine.planner.max_queued, 3);
  EXPECT_EQ(options.engine.workers, 2);
  EXPECT_EQ(options.engine.planner.workers, 2);
  EXPECT_EQ(options.engine.backend.kv_bytes, 64ull << 20);
  EXPECT_EQ(options.engine.context_tokens, 512);
  EXPECT_EQ(options.engine.backend.name, "sim");
  EXPECT_EQ(options.engine.sim_time_scale, 0.0);
  EXPECT_EQ(options.engine.kv_granularity, KvGranularity::Token);
  EXPECT_EQ(options.engine.request_timeout, std::chrono::milliseconds(1500));
}

TEST(ServerOptions, BadValuesNameTheOption) {
  EXPECT_NE(error_of({"--port", "70000"}).find("--port"), std::string::npos);
  EXPECT_NE(error_of({"--sync", "std,parking"}).find("--sync"), std::string::npos);
  EXPECT_NE(error_of({"--runtime", "actors,threads"}).find("--runtime"), std::string::npos);
  EXPECT_NE(error_of({"--runtime", "threads", "--sync", "actor"}).find("--sync"),
            std::string::npos);
  EXPECT_NE(error_of({"--log-level", "loud"}).find("--log-level"), std::string::npos);
  EXPECT_NE(error_of({"--kv-granularity", "batch"}).find("--kv-granularity"), std::string::npos);
  EXPECT_NE(error_of({"--max-seqs", "600"}).find("--max-seqs"), std::string::npos);
  EXPECT_NE(error_of({"--idle-timeout", "-1"}).find("idle-timeout"), std::string::npos);
  EXPECT_NE(error_of({"--no-such-flag", "1"}).find("no-such-flag"), std::string::npos);
}

TEST(ServerOptions, ConfigFileKeysAreFlagsAndFlagsWin) {
  const std::string text = "# server\nport = 9000\nsync = spin\nmax-seqs = 16\n";
  test::ScratchFile file(std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  const ServerOptions options = parse({"--config", file.path(), "--port", "9100"});
  EXPECT_EQ(options.http.port, 9100);
  EXPECT_EQ(options.engine.sync, SyncMode::Spin);
  EXPECT_EQ(options.engine.planner.max_seqs, 16);
}

TEST(ServerOptions, PrintedConfigReadsBackToTheSameOptionsWithKeysHidden) {
  const auto description = server_options_description();
  const auto values = parse_options(
      description, {"--port", "9200", "--sync", "futex", "--api-keys", "secret", "--max-queued",
                    "5", "--idle-timeout", "2.5", "--access-log", "false"});
  const std::string printed = effective_config_text(description, values);
  EXPECT_EQ(printed.find("secret"), std::string::npos);
  EXPECT_NE(printed.find("# api-keys"), std::string::npos);
  test::ScratchFile file(
      std::span(reinterpret_cast<const uint8_t*>(printed.data()), printed.size()));
  const ServerOptions again = parse({"--config", file.path()});
  EXPECT_EQ(again.http.port, 9200);
  EXPECT_EQ(again.engine.sync, SyncMode::Futex);
  EXPECT_EQ(again.engine.planner.max_queued, 5);
  EXPECT_EQ(again.http.idle_timeout, std::chrono::milliseconds(2500));
  EXPECT_FALSE(again.http.access_log);
}

TEST(ServerOptions, ShippedConfigFilesAreValid) {
  const std::string dir = std::string(TROUPE_SOURCE_DIR) + "/config/";
  const ServerOptions standard = parse({"--config", dir + "troupe-server.conf"});
  EXPECT_EQ(standard.http.host, "127.0.0.1");
  EXPECT_EQ(parse({"--config", dir + "server-sim-7b-h200.conf"}).engine.backend.name, "sim");
  EXPECT_EQ(parse({"--config", dir + "server-low-latency.conf"}).engine.planner.max_seqs, 8);
  EXPECT_EQ(parse({"--config", dir + "server-high-throughput.conf"}).engine.planner.max_seqs, 128);
  EXPECT_EQ(parse({"--config", dir + "server-cpu-small.conf"}).engine.context_tokens, 4096);
}

}  // namespace
}  // namespace troupe
