// HttpServer with an engine that delivers from its own threads, as the real runtimes do: many
// concurrent streams each get every chunk in order and exactly one end (no lost wake-up when a
// chunk lands while the connection is writing), and closing a stream cancels its request.
// Run under ThreadSanitizer by the tsan preset.
#include "daemon/http_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <thread>

#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"

namespace troupe {
namespace {

constexpr int kChunks = 100;

// Streams kChunks chunks "<i>," per request from two delivery threads, a few microseconds
// apart, then ends it; a cancelled request ends Cancelled at its next chunk.
class ThreadedEngine final : public Engine {
 public:
  ThreadedEngine() {
    test::ScratchFile file;
    test::write_tiny_model(test::tiny_model_preset("llama-gpt2-q4_1"), file.path());
    model_ = LoadedModel::open(file.path());
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { deliver(); });
  }
  ~ThreadedEngine() override { shutdown(std::chrono::milliseconds(0)); }

  RequestId submit(GenerateRequest, std::shared_ptr<ResponseSink> sink) override {
    std::lock_guard lock(mutex_);
    const RequestId id = ++next_id_;
    queue_.push_back({id, std::move(sink), 0});
    ready_.notify_one();
    return id;
  }
  void cancel(RequestId id) override {
    std::lock_guard lock(mutex_);
    cancelled_.insert(id);
  }
  void reload(const std::string&) override {}
  std::shared_ptr<const LoadedModel> model() const override { return model_; }
  int32_t context_tokens() const override { return 2048; }
  EngineStats stats() const override { return {}; }
  std::vector<double> take_step_gaps() override { return {}; }
  int shutdown(std::chrono::milliseconds) override {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return 0;
      stopping_ = true;
    }
    ready_.notify_all();
    for (std::thread& thread : threads_) thread.join();
    return 0;
  }
  int cancelled_ends() const { return cancelled_ends_; }

 private:
  struct Work {
    RequestId id;
    std::shared_ptr<ResponseSink> sink;
    int sent;
  };

  void deliver() {
    while (true) {
      Work work;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        work = std::move(queue_.front());
        queue_.pop_front();
      }
      bool cancelled;
      {
        std::lock_guard lock(mutex_);
        cancelled = cancelled_.count(work.id) > 0 || stopping_;
      }
      if (cancelled) {
        EndEvent end;
        end.kind = EndKind::Cancelled;
        work.sink->on_end(end);
        ++cancelled_ends_;
        continue;
      }
      if (work.sent < kChunks) {
        work.sink->on_chunk(TextChunk{std::to_string(work.sent) + ",", {}});
        ++work.sent;
        std::this_thread::sleep_for(std::chrono::microseconds(20 + 40 * (work.id % 3)));
        std::lock_guard lock(mutex_);
        queue_.push_back(std::move(work));
        continue;
      }
      EndEvent end;
      end.usage = {1, kChunks, 0};
      work.sink->on_end(end);
    }
  }

  std::shared_ptr<const LoadedModel> model_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Work> queue_;
  std::set<RequestId> cancelled_;
  RequestId next_id_ = 0;
  bool stopping_ = false;
  std::atomic<int> cancelled_ends_{0};
  std::vector<std::thread> threads_;
};

int connect_to(uint16_t port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  timeval timeout{20, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  EXPECT_EQ(::send(fd, request.data(), request.size(), 0), ssize_t(request.size()));
  return fd;
}

int open_stream(uint16_t port) {
  const std::string body = R"({"prompt":"x","stream":true})";
  return connect_to(port, "POST /v1/completions HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                          "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
}

// The concatenated "text" fields of a raw SSE response.
std::string streamed_text(const std::string& raw) {
  std::string text;
  const std::string key = "\"text\":\"";
  for (std::size_t at = raw.find(key); at != std::string::npos; at = raw.find(key, at + 1)) {
    const std::size_t start = at + key.size();
    text += raw.substr(start, raw.find('"', start) - start);
  }
  return text;
}

TEST(HttpServerThreads, ConcurrentStreamsGetEveryChunkAndClosedOnesAreCancelled) {
  ThreadedEngine* engine = nullptr;
  HttpOptions options;
  options.port = 0;
  options.access_log = false;
  HttpServer server(options, "", [&engine] {
    auto made = std::make_unique<ThreadedEngine>();
    engine = made.get();
    return made;
  });
  std::thread runner([&server] { EXPECT_EQ(server.run(false), 0); });

  std::string expected;
  for (int i = 0; i < kChunks; ++i) expected += std::to_string(i) + ",";
  constexpr int kClients = 16, kClosing = 4;
  for (int attempt = 0; attempt < 500; ++attempt) {  // until the engine is made
    const int fd = connect_to(server.port(), "GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
    char buffer[16];
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    ::close(fd);
    if (n > 12 && std::string(buffer, 12) == "HTTP/1.1 200") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }

  std::vector<std::thread> clients;
  std::vector<std::string> answers(kClients);
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      const int fd = open_stream(server.port());
      if (c < kClosing) {  // read the first bytes, then hang up
        char buffer[64];
        EXPECT_GT(::recv(fd, buffer, sizeof buffer, 0), 0);
        ::close(fd);
        return;
      }
      char buffer[4096];
      for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) answers[c].append(buffer, size_t(n));
      ::close(fd);
    });
  }
  for (std::thread& client : clients) client.join();
  for (int c = kClosing; c < kClients; ++c) {
    EXPECT_EQ(streamed_text(answers[c]), expected) << "client " << c;
    EXPECT_NE(answers[c].find("data: [DONE]"), std::string::npos) << "client " << c;
  }
  for (int i = 0; i < 500 && engine->cancelled_ends() < kClosing; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(engine->cancelled_ends(), kClosing);
  server.stop();
  runner.join();
}

}  // namespace
}  // namespace troupe
