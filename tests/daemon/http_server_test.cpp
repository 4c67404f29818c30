// HttpServer over a scripted fake Engine: what the daemon answers for each way a request can
// end (the real engine's paths are covered by the end-to-end tests), and its life: 503 while
// the model loads, exit status 1 when it cannot load, 0 after stop().
#include "daemon/http_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <future>
#include <mutex>
#include <thread>

#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"

namespace troupe {
namespace {

using json = nlohmann::json;

std::shared_ptr<const LoadedModel> tiny_model() {
  static const std::shared_ptr<const LoadedModel> model = [] {
    test::ScratchFile file;
    test::write_tiny_model(test::tiny_model_preset("llama-gpt2-q4_1"), file.path());
    return std::shared_ptr<const LoadedModel>(LoadedModel::open(file.path()));
  }();
  return model;
}

// Answers every request at once with the scripted chunks and end.
class FakeEngine final : public Engine {
 public:
  std::vector<TextChunk> chunks;
  EndEvent end;
  std::atomic<int> submitted{0};

  RequestId submit(GenerateRequest, std::shared_ptr<ResponseSink> sink) override {
    ++submitted;
    for (const TextChunk& chunk : chunks) sink->on_chunk(chunk);
    sink->on_end(end);
    return RequestId(submitted.load());
  }
  void cancel(RequestId) override {}
  void reload(const std::string& path) override {
    if (!path.empty()) throw ModelLoadError("cannot load model '" + path + "': no such file");
  }
  std::shared_ptr<const LoadedModel> model() const override { return tiny_model(); }
  int32_t context_tokens() const override { return 2048; }
  EngineStats stats() const override { return {}; }
  std::vector<double> take_step_gaps() override { return {}; }
  int shutdown(std::chrono::milliseconds) override { return 0; }
};

struct Answer {
  int status = 0;
  std::string head;
  std::string body;
};

// One request with `Connection: close`; reads to the end.
Answer exchange(uint16_t port, const std::string& method, const std::string& path,
                const std::string& body = {}) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  const std::string request = method + " " + path + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" +
                              "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  EXPECT_EQ(::send(fd, request.data(), request.size(), 0), ssize_t(request.size()));
  std::string received;
  char buffer[4096];
  for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) received.append(buffer, size_t(n));
  ::close(fd);
  Answer answer;
  const auto split = received.find("\r\n\r\n");
  answer.head = received.substr(0, split);
  answer.body = split == std::string::npos ? "" : received.substr(split + 4);
  if (received.size() > 12) answer.status = std::stoi(received.substr(9, 3));
  return answer;
}

class RunningServer {
 public:
  explicit RunningServer(EngineFactory factory) {
    HttpOptions options;
    options.port = 0;
    options.access_log = false;
    options.drain_timeout = std::chrono::milliseconds(100);
    server_ = std::make_unique<HttpServer>(options, "", std::move(factory));
    thread_ = std::thread([this] { status_ = server_->run(false); });
  }
  ~RunningServer() { stop(); }
  uint16_t port() const { return server_->port(); }
  int stop() {
    if (thread_.joinable()) {
      server_->stop();
      thread_.join();
    }
    return status_;
  }
  void wait_ready() {
    for (int i = 0; i < 500 && exchange(port(), "GET", "/health").status != 200; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }

 private:
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
  int status_ = -1;
};

EndEvent error_end(ErrorKind kind, std::string message) {
  EndEvent end;
  end.kind = EndKind::Error;
  end.error = kind;
  end.message = std::move(message);
  return end;
}

TEST(HttpServer, AnswersServiceUnavailableWhileTheModelLoads) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  RunningServer server([released] {
    released.wait();
    return std::make_unique<FakeEngine>();
  });
  const Answer health = exchange(server.port(), "GET", "/health");
  EXPECT_EQ(health.status, 503);
  EXPECT_EQ(json::parse(health.body)["status"], "loading");
  const Answer completion =
      exchange(server.port(), "POST", "/v1/completions", R"({"prompt":"x"})");
  EXPECT_EQ(completion.status, 503);
  EXPECT_EQ(json::parse(completion.body)["error"]["code"], "loading");
  EXPECT_EQ(exchange(server.port(), "GET", "/metrics").status, 200);
  release.set_value();
  server.wait_ready();
  EXPECT_EQ(exchange(server.port(), "GET", "/health").status, 200);
  EXPECT_EQ(server.stop(), 0);
}

TEST(HttpServer, ExitsWithStatusOneWhenTheEngineCannotStart) {
  RunningServer server(
      []() -> std::unique_ptr<Engine> { throw ModelLoadError("cannot load model 'x'"); });
  EXPECT_EQ(server.stop(), 1);
}

TEST(HttpServer, EngineErrorsBecomeTheirStatuses) {
  FakeEngine* engine = nullptr;
  RunningServer server([&engine] {
    auto made = std::make_unique<FakeEngine>();
    engine = made.get();
    return made;
  });
  server.wait_ready();
  ASSERT_NE(engine, nullptr);
  const std::string body = R"({"prompt":"x"})";

  engine->end = error_end(ErrorKind::QueueFull, "the queue is full");
  Answer answer = exchange(server.port(), "POST", "/v1/completions", body);
  EXPECT_EQ(answer.status, 429);
  EXPECT_NE(answer.head.find("Retry-After: 1"), std::string::npos) << answer.head;
  EXPECT_EQ(json::parse(answer.body)["error"]["message"], "the queue is full");

  engine->end = error_end(ErrorKind::WorkerFailed, "the worker failed");
  answer = exchange(server.port(), "POST", "/v1/chat/completions",
                    R"({"messages":[{"role":"user","content":"x"}]})");
  EXPECT_EQ(answer.status, 500);
  EXPECT_EQ(json::parse(answer.body)["error"]["type"], "server_error");

  engine->end = error_end(ErrorKind::Unavailable, "shutting down");
  EXPECT_EQ(exchange(server.port(), "POST", "/v1/completions", body).status, 503);

  engine->end = error_end(ErrorKind::InvalidRequest, "stop strings too long");
  engine->end.param = "stop";
  answer = exchange(server.port(), "POST", "/v1/completions", body);
  EXPECT_EQ(answer.status, 400);
  EXPECT_EQ(json::parse(answer.body)["error"]["param"], "stop");

  // A failure after text was streamed: 200, the text, then an error event and [DONE].
  engine->chunks = {TextChunk{"partial", {}}};
  engine->end = error_end(ErrorKind::WorkerFailed, "the worker failed");
  answer = exchange(server.port(), "POST", "/v1/completions", R"({"prompt":"x","stream":true})");
  EXPECT_EQ(answer.status, 200);
  EXPECT_NE(answer.body.find("\"text\":\"partial\""), std::string::npos) << answer.body;
  EXPECT_NE(answer.body.find("\"code\":\"worker_failed\""), std::string::npos) << answer.body;
  EXPECT_NE(answer.body.find("data: [DONE]"), std::string::npos) << answer.body;

  // A finished request, not streamed.
  engine->chunks = {TextChunk{"Hello", {}}, TextChunk{" world", {}}};
  engine->end = EndEvent{};
  engine->end.finish = FinishReason::Stop;
  engine->end.usage = {3, 2, 0};
  answer = exchange(server.port(), "POST", "/v1/completions", body);
  ASSERT_EQ(answer.status, 200);
  const json done = json::parse(answer.body);
  EXPECT_EQ(done["choices"][0]["text"], "Hello world");
  EXPECT_EQ(done["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(done["usage"]["total_tokens"], 5);
}

TEST(HttpServer, ReloadRefusesAFileThatCannotLoadWithBadRequest) {
  FakeEngine* engine = nullptr;
  RunningServer server([&engine] {
    auto made = std::make_unique<FakeEngine>();
    engine = made.get();
    return made;
  });
  server.wait_ready();
  const Answer refused =
      exchange(server.port(), "POST", "/admin/reload", R"({"model":"/nowhere.gguf"})");
  EXPECT_EQ(refused.status, 400);
  EXPECT_EQ(json::parse(refused.body)["error"]["param"], "model");
  const Answer reloaded = exchange(server.port(), "POST", "/admin/reload", "");
  EXPECT_EQ(reloaded.status, 200);
  EXPECT_EQ(json::parse(reloaded.body)["status"], "ok");
}

}  // namespace
}  // namespace troupe
