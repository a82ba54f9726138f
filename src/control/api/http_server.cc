#include "control/api/http_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/log.h"
#include "control/api/crypto_util.h"
#include "http/http1/chunked.h"
#include "http/http1/parser.h"
#include "http/status.h"
#include "net/connection.h"
#include "net/event_loop.h"

namespace weft::control {
namespace {

std::string_view reasonFor(int status) {
  std::string_view r = http::reasonPhrase(status);
  if (!r.empty()) return r;
  return status < 400 ? "OK" : status < 500 ? "Client Error" : "Server Error";
}

// A fixed set of threads running tasks in submission order.
//
// stop(deadline) drops the tasks still queued (never run), waits until `deadline` for the
// running ones, joins the threads that finished and detaches the others (answered as the number
// abandoned). The queue state is shared with the threads, so a detached thread that finishes
// later touches nothing freed.
class ThreadPool {
 public:
  explicit ThreadPool(size_t threads) : state_(std::make_shared<State>()) {
    for (size_t i = 0; i < threads; ++i) threads_.emplace_back([s = state_] { run(*s); });
  }
  ~ThreadPool() { stop(std::chrono::steady_clock::now()); }
  void submit(std::function<void()> task) {
    {
      std::lock_guard lock(state_->mu);
      if (state_->stopping) return;
      state_->tasks.push_back(std::move(task));
    }
    state_->cv.notify_one();
  }
  size_t stop(std::chrono::steady_clock::time_point deadline) {
    std::deque<std::function<void()>> dropped;
    bool all_done = false;
    {
      std::unique_lock lock(state_->mu);
      state_->stopping = true;
      dropped.swap(state_->tasks);
      state_->cv.notify_all();
      all_done = state_->done_cv.wait_until(lock, deadline,
                                            [this] { return state_->exited == threads_.size(); });
    }
    size_t abandoned = 0;
    if (all_done) {
      for (auto& t : threads_) t.join();
    } else {
      // Which thread is stuck is not known; detaching all is safe (they hold only state_).
      std::lock_guard lock(state_->mu);
      abandoned = threads_.size() - state_->exited;
      for (auto& t : threads_) t.detach();
    }
    threads_.clear();
    return abandoned;  // `dropped` is destroyed here, outside the lock
  }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;       // tasks or stopping
    std::condition_variable done_cv;  // a thread exited
    std::deque<std::function<void()>> tasks;
    bool stopping = false;
    size_t exited = 0;
  };
  static void run(State& s) {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock lock(s.mu);
        s.cv.wait(lock, [&s] { return s.stopping || !s.tasks.empty(); });
        if (s.stopping) {
          ++s.exited;
          s.done_cv.notify_all();
          return;
        }
        task = std::move(s.tasks.front());
        s.tasks.pop_front();
      }
      task();
    }
  }
  std::shared_ptr<State> state_;
  std::vector<std::thread> threads_;
};

}  // namespace

std::string serializeResponse(const ApiResponse& response, std::string_view request_id, bool close,
                              bool head) {
  std::string out = "HTTP/1.1 " + std::to_string(response.status) + " " +
                    std::string(reasonFor(response.status)) + "\r\n";
  if (!response.content_type.empty()) out += "content-type: " + response.content_type + "\r\n";
  out += "content-length: " + std::to_string(response.body.size()) + "\r\n";
  for (const auto& [k, v] : response.headers) out += k + ": " + v + "\r\n";
  if (!request_id.empty()) out += "x-amzn-RequestId: " + std::string(request_id) + "\r\n";
  out += "server: weft\r\n";
  if (close) out += "connection: close\r\n";
  out += "\r\n";
  if (!head) out += response.body;
  return out;
}

struct HttpServer::Impl : public net::IoHandler {
  class Session;

  Impl(HttpServerOptions o, Handler h, const TimeSource& t)
      : options(std::move(o)),
        handler(std::make_shared<const Handler>(std::move(h))),
        time(t),
        outbox(std::make_shared<Outbox>()) {}

  // Where a pool thread posts its answer. Shared with the tasks so a handler abandoned by stop()
  // (see the header) finds `loop` null instead of a destroyed loop.
  struct Outbox {
    std::mutex mu;
    net::EventLoop* loop = nullptr;
  };

  void onIoEvents(uint32_t) override;  // the listening socket
  void beginDrain();
  void finishSession(uint64_t id);
  void maybeFinishDrain();
  void deliver(uint64_t id, ApiResponse response);
  bool reserveBody(size_t n) {
    if (buffered_body_bytes + n > options.max_buffered_body_bytes) return false;
    buffered_body_bytes += n;
    return true;
  }

  HttpServerOptions options;
  std::shared_ptr<const Handler> handler;
  const TimeSource& time;
  std::shared_ptr<Outbox> outbox;
  size_t abandoned = 0;  // controlling thread
  std::unique_ptr<net::EventLoop> loop;
  std::unique_ptr<ThreadPool> pool;
  std::thread loop_thread;
  int listen_fd = -1;
  net::Address address;
  bool running = false;  // controlling thread only

  // Loop thread only:
  std::unordered_map<uint64_t, std::unique_ptr<Session>> sessions;
  uint64_t next_id = 1;
  bool draining = false;
  bool in_drain_scan = false;
  size_t buffered_body_bytes = 0;  // request bodies held, over all sessions
  std::unique_ptr<Timer> drain_timer;
};

// One client connection. Lives on the loop thread; destroyed via deferDelete.
class HttpServer::Impl::Session final : public net::ConnectionCallbacks, public net::Deferrable {
 public:
  Session(Impl& server, uint64_t id, int fd)
      : server_(server),
        id_(id),
        conn_(std::make_unique<net::Connection>(*server.loop, fd, net::makePlainTransport(fd), this,
                                                false)),
        parser_(http1::ParseLimits{server.options.max_head_bytes, server.options.max_headers}),
        timer_(server.loop->timers(), [this] { onTimeout(); }) {
    peer_ = conn_->remoteAddress().toString();
    timer_.arm(server_.options.idle_timeout);
  }

  ~Session() override { releaseBody(); }

  bool handling() const { return state_ == State::kHandling; }

  // Drain: closes the connection unless its request is being handled (that one closes after
  // its response).
  void drain() {
    if (state_ != State::kHandling) close();
  }

  void onData(net::Connection&) override { process(); }

  void onClose(net::Connection&, net::CloseReason, std::string_view) override {
    state_ = State::kClosed;
    server_.finishSession(id_);
  }

  void respond(ApiResponse response) {
    if (state_ != State::kHandling) return;
    bool close_after = !keep_alive_ || server_.draining;
    log::debug("api", request_method_ + " " + request_path_ + " -> " +
                          std::to_string(response.status) + " (" + peer_ + ")");
    conn_->write(serializeResponse(response, request_id_, close_after, head_request_));
    releaseBody();
    if (close_after) {
      close();
      return;
    }
    state_ = State::kIdle;
    timer_.arm(server_.options.idle_timeout);
    conn_->readDisable(false);
    process();  // a pipelined request may already be buffered
  }

 private:
  enum class State { kIdle, kHead, kBody, kHandling, kClosed };

  void process() {
    while (state_ != State::kHandling && state_ != State::kClosed) {
      Buffer& in = conn_->input();
      if (state_ == State::kIdle || state_ == State::kHead) {
        if (in.empty()) return;
        if (state_ == State::kIdle) {
          state_ = State::kHead;
          timer_.arm(server_.options.request_timeout);
          // A new request: its own id, also for an error answered before its head is parsed.
          request_id_ = uuidV4();
        }
        http1::ParseResult r = parser_.parse(in.view());
        if (r.needMore()) return;
        if (r.failed()) {
          fail(r.error.status,
               r.error.status == 431 ? "RequestHeaderFieldsTooLargeException"
                                     : "BadRequestException",
               std::string(r.error.reason));
          return;
        }
        if (!startRequest(r.consumed)) return;
      }
      if (state_ == State::kBody && !readBody()) return;
    }
  }

  // Copies the parsed head into request_ and consumes it. False if the request was refused.
  bool startRequest(size_t head_bytes) {
    const http1::RequestHead& h = parser_.head();
    request_ = HttpRequest{};
    request_.method = std::string(h.method);
    if (h.target_form != http1::TargetForm::kOrigin &&
        h.target_form != http1::TargetForm::kAbsolute) {
      fail(400, "BadRequestException", "the request target must be a path");
      return false;
    }
    request_.path = std::string(h.path.empty() ? std::string_view("/") : h.path);
    request_.query = std::string(h.query);
    for (const http::HeaderField& f : h.headers) {
      std::string name(f.name);
      for (char& c : name) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
      request_.headers.emplace_back(std::move(name), std::string(f.value));
    }
    request_.peer = peer_;
    request_.request_id = request_id_;
    keep_alive_ = h.keep_alive && !h.connection_close;
    head_request_ = h.method_id == http1::Method::kHead;
    request_method_ = request_.method;
    request_path_ = request_.path;
    body_kind_ = h.body_kind;
    remaining_ = h.content_length;
    bool expect_continue = h.expect_100_continue;
    conn_->input().consume(head_bytes);
    // Authenticate the head before reading any body byte (see the header).
    body_limit_ = server_.options.max_body_bytes;
    if (server_.options.check_head) {
      HeadCheck check = server_.options.check_head(request_);
      if (check.refuse) {
        log::debug("api", request_method_ + " " + request_path_ + " -> " +
                              std::to_string(check.refuse->status) + " before its body (" + peer_ +
                              ")");
        conn_->write(serializeResponse(*check.refuse, request_id_, true, head_request_));
        close();
        return false;
      }
      if (check.max_body_bytes != 0) body_limit_ = check.max_body_bytes;
    }
    if (h.body_kind == http1::BodyKind::kContentLength && h.content_length > body_limit_) {
      tooLarge();
      return false;
    }
    if (h.body_kind == http1::BodyKind::kChunked) decoder_.reset();
    if (h.body_kind == http1::BodyKind::kNone ||
        (h.body_kind == http1::BodyKind::kContentLength && remaining_ == 0)) {
      dispatch();
      return true;
    }
    if (expect_continue && conn_->input().empty()) conn_->write("HTTP/1.1 100 Continue\r\n\r\n");
    state_ = State::kBody;
    return true;
  }

  // Moves body bytes from the input into request_.body. False while more are needed or if
  // the request was refused.
  bool readBody() {
    Buffer& in = conn_->input();
    if (body_kind_ == http1::BodyKind::kContentLength) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, in.size()));
      if (!holdBody(n)) return false;
      request_.body.append(in.data(), n);
      in.consume(n);
      remaining_ -= n;
      if (remaining_ > 0) return false;
      dispatch();
      return true;
    }
    // Chunked.
    bool too_large = false, busy = false;
    auto step = decoder_.decode(in.view(), [&](std::string_view data) {
      if (too_large || busy) return;
      if (request_.body.size() + data.size() > body_limit_) {
        too_large = true;
        return;
      }
      if (!server_.reserveBody(data.size())) {
        busy = true;
        return;
      }
      held_body_bytes_ += data.size();
      request_.body.append(data);
    });
    in.consume(step.consumed);
    if (too_large) {
      tooLarge();
      return false;
    }
    if (busy) {
      serverBusy();
      return false;
    }
    if (step.failed()) {
      fail(400, "BadRequestException", std::string(step.error.reason));
      return false;
    }
    if (!step.done) return false;
    dispatch();
    return true;
  }

  void dispatch() {
    state_ = State::kHandling;
    timer_.disarm();
    conn_->readDisable(true);
    Impl* server = &server_;
    uint64_t id = id_;
    // The task holds the handler and the outbox, not the server: an abandoned one (stop())
    // outlives the server's members.
    server_.pool->submit([server, id, handler = server_.handler, outbox = server_.outbox,
                          req = std::move(request_)]() mutable {
      ApiResponse resp = (*handler)(req);
      std::lock_guard lock(outbox->mu);
      if (outbox->loop == nullptr) return;  // stopped: the answer goes nowhere
      outbox->loop->post(
          [server, id, resp = std::move(resp)]() mutable { server->deliver(id, std::move(resp)); });
    });
    request_ = HttpRequest{};
  }

  void tooLarge() {
    fail(413, "PayloadTooLargeException",
         "the request body is larger than the " + std::to_string(body_limit_) +
             " bytes this server accepts for it");
  }

  void serverBusy() {
    fail(503, "ServiceUnavailableException",
         "the server holds too many request bodies at the moment; retry later");
  }

  // Accounts `n` more body bytes against the server-wide cap; answers 503 when over.
  bool holdBody(size_t n) {
    if (n == 0) return true;
    if (!server_.reserveBody(n)) {
      serverBusy();
      return false;
    }
    held_body_bytes_ += n;
    return true;
  }

  void releaseBody() {
    server_.buffered_body_bytes -= held_body_bytes_;
    held_body_bytes_ = 0;
  }

  // Answers an error the server itself found (no handler ran) and closes.
  void fail(int status, std::string_view type, std::string message) {
    log::debug("api",
               "refused a request from " + peer_ + ": " + std::to_string(status) + " " + message);
    conn_->write(serializeResponse(apiError(status, type, message), request_id_, true, false));
    close();
  }

  void onTimeout() {
    if (state_ == State::kHead || state_ == State::kBody) {
      fail(408, "RequestTimeoutException",
           "the request was not received completely within the request timeout");
      return;
    }
    if (state_ == State::kIdle) close();
  }

  void close() {
    if (state_ == State::kClosed) return;
    state_ = State::kClosed;
    timer_.disarm();
    Impl* server = &server_;
    uint64_t id = id_;
    conn_->closeAfterFlush([server, id] { server->finishSession(id); });
  }

  Impl& server_;
  uint64_t id_;
  std::unique_ptr<net::Connection> conn_;
  http1::RequestParser parser_;
  http1::ChunkedDecoder decoder_;
  Timer timer_;
  State state_ = State::kIdle;
  HttpRequest request_;
  http1::BodyKind body_kind_ = http1::BodyKind::kNone;
  uint64_t remaining_ = 0;
  size_t body_limit_ = 0;
  size_t held_body_bytes_ = 0;  // counted in server_.buffered_body_bytes
  bool keep_alive_ = true;
  bool head_request_ = false;
  std::string request_method_, request_path_, request_id_;
  std::string peer_;
};

void HttpServer::Impl::onIoEvents(uint32_t) {
  for (;;) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    if (draining || sessions.size() >= options.max_connections) {
      ::close(fd);
      continue;
    }
    net::setNoDelay(fd);  // a response is one write; do not hold it for the client's ACK
    uint64_t id = next_id++;
    sessions.emplace(id, std::make_unique<Session>(*this, id, fd));
  }
}

void HttpServer::Impl::finishSession(uint64_t id) {
  auto it = sessions.find(id);
  if (it == sessions.end()) return;
  loop->deferDelete(std::move(it->second));
  sessions.erase(it);
  maybeFinishDrain();
}

void HttpServer::Impl::deliver(uint64_t id, ApiResponse response) {
  auto it = sessions.find(id);
  if (it == sessions.end()) return;  // the client went away while its request was handled
  it->second->respond(std::move(response));
}

void HttpServer::Impl::beginDrain() {
  draining = true;
  if (listen_fd >= 0) {
    loop->remove(listen_fd);
    ::close(listen_fd);
    listen_fd = -1;
  }
  drain_timer = std::make_unique<Timer>(loop->timers(), [this] {
    log::warn("api", std::to_string(sessions.size()) +
                         " connection(s) still busy at the end of the drain timeout; closing");
    loop->stop();  // stop() destroys the sessions once the loop thread has ended
  });
  drain_timer->arm(options.drain_timeout);
  maybeFinishDrain();
}

void HttpServer::Impl::maybeFinishDrain() {
  if (!draining || in_drain_scan) return;
  // Connections whose request is being handled get their answer (with connection: close);
  // every other one is closed now, even one in the middle of sending a request.
  in_drain_scan = true;
  std::vector<Session*> others;
  for (auto& [id, s] : sessions)
    if (!s->handling()) others.push_back(s.get());
  for (Session* s : others) s->drain();  // deferred deletion keeps the pointers valid
  in_drain_scan = false;
  if (sessions.empty()) loop->stop();
}

HttpServer::HttpServer(HttpServerOptions options, Handler handler, const TimeSource& time)
    : impl_(std::make_unique<Impl>(options, std::move(handler), time)) {}

HttpServer::~HttpServer() { stop(); }

size_t HttpServer::abandonedHandlers() const { return impl_->abandoned; }

Result<net::Address> HttpServer::start(const net::Address& address) {
  if (impl_->running) return makeError("the API server is already running");
  auto fd = net::listenTcp(address);
  if (!fd) return Unexpected<Error>{fd.error()};
  impl_->listen_fd = *fd;
  impl_->address = net::localAddress(*fd);
  impl_->loop = std::make_unique<net::EventLoop>(impl_->time);
  impl_->loop->add(impl_->listen_fd, EPOLLIN, impl_.get());
  {
    std::lock_guard lock(impl_->outbox->mu);
    impl_->outbox->loop = impl_->loop.get();
  }
  impl_->pool = std::make_unique<ThreadPool>(std::max<size_t>(1, impl_->options.handler_threads));
  impl_->loop_thread = std::thread([impl = impl_.get()] { impl->loop->run(); });
  impl_->running = true;
  return impl_->address;
}

void HttpServer::stop() {
  if (!impl_->running) return;
  impl_->running = false;
  Impl* impl = impl_.get();
  auto deadline =
      std::chrono::steady_clock::now() + impl->options.drain_timeout + impl->options.handler_grace;
  impl->loop->post([impl] { impl->beginDrain(); });
  impl->loop_thread.join();
  {
    std::lock_guard lock(impl->outbox->mu);
    impl->outbox->loop = nullptr;  // answers of handlers still running go nowhere
  }
  // Queued requests are dropped; running handlers get until the deadline, then are abandoned.
  size_t abandoned = impl->pool->stop(deadline);
  if (abandoned > 0) {
    impl->abandoned += abandoned;
    log::error("api", std::to_string(abandoned) +
                          " request handler(s) still running after the drain timeout and the "
                          "handler grace period; abandoned");
  }
  impl->drain_timer.reset();
  impl->sessions.clear();
  if (impl->listen_fd >= 0) {
    ::close(impl->listen_fd);
    impl->listen_fd = -1;
  }
  impl->loop.reset();
  impl->pool.reset();
}

}  // namespace weft::control
