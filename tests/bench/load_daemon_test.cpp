// `troupe-bench load` against a real troupe-server on loopback (an ephemeral port) serving a
// tiny generated model.
#include "bench/load_suite.hpp"

#include <chrono>
#include <csignal>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <thread>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>

#include "bench/compare.hpp"
#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"

#ifndef TROUPE_SERVER_PATH
#error "tests/bench/CMakeLists.txt defines TROUPE_SERVER_PATH"
#endif

namespace troupe {
namespace {

std::span<const uint8_t> bytes_of(const std::string& text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

// troupe-server as a child process, stopped with SIGTERM by the destructor.
class Server {
 public:
  Server(const std::string& model_path, const std::string& port_file) {
    pid_ = fork();
    if (pid_ == 0) {
      const char* args[] = {TROUPE_SERVER_PATH,
                            "--model",
                            model_path.c_str(),
                            "--port",
                            "0",
                            "--port-file",
                            port_file.c_str(),
                            "--backend-threads",
                            "1",
                            "--access-log",
                            "0",
                            "--log-level",
                            "warn",
                            nullptr};
      execv(args[0], const_cast<char* const*>(args));
      _exit(127);
    }
    for (int i = 0; i < 200 && port_.empty(); ++i) {
      std::ifstream in(port_file);
      std::getline(in, port_);
      if (port_.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ~Server() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  const std::string& port() const { return port_; }

 private:
  pid_t pid_ = -1;
  std::string port_;
};

TEST(LoadAgainstDaemon, StreamsEveryRequestAndCountsRefusals) {
  const test::ScratchFile model(test::tiny_model_bytes(test::tiny_model_preset("llama-spm-f32")));
  test::ScratchFile port_file, dataset, json_file;
  std::remove(port_file.path().c_str());
  dataset.write(
      bytes_of("{\"prompt\": \"hello world\"}\n{\"prompt\": \"the cat\", \"max_tokens\": 3}\n"));
  const Server server(model.path(), port_file.path());
  ASSERT_FALSE(server.port().empty()) << "troupe-server did not write its port";

  LoadConfig config;
  config.url = "http://127.0.0.1:" + server.port();
  config.requests = 10;
  config.rate = 50;
  config.max_concurrency = 3;
  config.dataset.kind = dataset.path();
  config.dataset.output_len = 6;
  config.goodput = "ttft:60000";
  config.slo = parse_slo(config.goodput);
  config.timeout_seconds = 30;
  config.json = json_file.path();
  std::ostringstream out;
  const LoadSummary summary = run_load_suite(config, out);
  EXPECT_EQ(summary.completed, 10) << out.str();
  EXPECT_EQ(summary.failed, 0) << out.str();
  EXPECT_LE(summary.peak_concurrency, 3);
  // Five requests of 6 tokens and five of 3, as the server's usage reports them.
  EXPECT_DOUBLE_EQ(summary.output_tok_per_s * summary.duration, 45);
  EXPECT_DOUBLE_EQ(summary.goodput_fraction, 1.0);
  EXPECT_GT(summary.ttft_ms.p50, 0);
  EXPECT_LE(summary.ttft_ms.p99, summary.e2e_ms.p99);
  EXPECT_GT(summary.itl_ms.mean, 0);
  const nlohmann::json document = read_results_file(json_file.path());
  EXPECT_EQ(document["results"][0]["completed"], 10);

  // Token ids beyond the tiny vocabulary: every request is refused with 400.
  LoadConfig refused = config;
  refused.json.reset();
  dataset.write(bytes_of("{\"prompt\": [99999999]}\n"));
  refused.requests = 3;
  const LoadSummary failures = run_load_suite(refused, out);
  EXPECT_EQ(failures.completed, 0);
  EXPECT_EQ(failures.failures.at("400"), 3) << out.str();
}

TEST(LoadAgainstDaemon, NoServerIsAClearError) {
  LoadConfig config;
  config.url = "http://127.0.0.1:9";  // discard port: nothing listens
  config.requests = 2;
  config.rate = std::numeric_limits<double>::infinity();
  config.timeout_seconds = 5;
  std::ostringstream out;
  try {
    run_load_suite(config, out);
    FAIL() << "no error without a server";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("is the server running?"), std::string::npos)
        << error.what();
  }
}

// A loopback HTTP server that answers every request 503 (a server still loading its
// model), counting the requests; the destructor stops it.
class AlwaysLoading {
 public:
  AlwaysLoading() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address);
    listen(fd_, 16);
    socklen_t size = sizeof address;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &size);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] {
      for (;;) {
        const int client = accept(fd_, nullptr, nullptr);
        if (client < 0) return;
        std::string request;
        char buffer[1024];
        while (request.find("\r\n\r\n") == std::string::npos) {
          const ssize_t n = read(client, buffer, sizeof buffer);
          if (n <= 0) break;
          request.append(buffer, size_t(n));
        }
        if (request.rfind("GET /health ", 0) == 0) ++health_requests;
        const std::string reply =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            "Content-Length: 20\r\nConnection: close\r\n\r\n{\"status\":\"loading\"}";
        (void)!write(client, reply.data(), reply.size());
        close(client);
      }
    });
  }
  ~AlwaysLoading() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  int port() const { return port_; }
  std::atomic<int> health_requests{0};

 private:
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

TEST(LoadAgainstDaemon, WaitsWhileTheServerLoadsThenSaysItNeverBecameReady) {
  AlwaysLoading server;
  LoadConfig config;
  config.url = "http://127.0.0.1:" + std::to_string(server.port());
  config.requests = 2;
  config.wait_ready_seconds = 1;
  std::ostringstream out;
  const auto start = std::chrono::steady_clock::now();
  try {
    run_load_suite(config, out);
    FAIL() << "measured a server that never became ready";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("still answers 503"), std::string::npos)
        << error.what();
  }
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  EXPECT_GE(server.health_requests.load(), 5);  // polled every 100 ms for a second
}

}  // namespace
}  // namespace troupe
