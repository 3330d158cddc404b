#include "run/live_server.hpp"

#include <arpa/inet.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <httplib.h>

#include "run/compare.hpp"
#include "run/report.hpp"
#include "run/run_data.hpp"

namespace cllm::run {

namespace {

// Lowers the calling thread's priority (Linux applies nice per thread).
void lower_priority() {
  ::setpriority(PRIO_PROCESS, pid_t(::syscall(SYS_gettid)), 10);
}

// httplib's request threads, at low priority when asked: `base` at once, one more whenever a job
// arrives while every thread is busy (a connection holds its thread while it stays open), up to
// `max`. Threads started on demand stay until shutdown.
class Pool final : public httplib::TaskQueue {
 public:
  Pool(int base, int max, bool low) : max_(std::max(base, max)), low_(low) {
    std::lock_guard<std::mutex> lk(mu_);
    for (int i = 0; i < base; ++i) spawn_locked();
  }
  void enqueue(std::function<void()> fn) override {
    {
      std::lock_guard<std::mutex> lk(mu_);
      jobs_.push_back(std::move(fn));
      if (idle_ < int(jobs_.size()) && int(threads_.size()) < max_) spawn_locked();
    }
    cv_.notify_one();
  }
  void shutdown() override {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    // No thread is added after stop_ (enqueue is not called once httplib shuts down).
    for (auto& t : threads_) t.join();
  }

 private:
  void spawn_locked() {
    threads_.emplace_back([this] {
      if (low_) lower_priority();
      std::unique_lock<std::mutex> lk(mu_);
      for (;;) {
        ++idle_;
        cv_.wait(lk, [&] { return stop_ || !jobs_.empty(); });
        --idle_;
        if (jobs_.empty()) return;  // stopping and nothing left
        std::function<void()> fn = std::move(jobs_.front());
        jobs_.pop_front();
        lk.unlock();
        fn();
        lk.lock();
      }
    });
  }

  const int max_;
  const bool low_;
  std::vector<std::thread> threads_;
  std::deque<std::function<void()>> jobs_;
  std::mutex mu_;
  std::condition_variable cv_;
  int idle_ = 0;  // threads waiting for a job
  bool stop_ = false;
};

// The Host header without its port, lower-case ("[::1]:8080" -> "[::1]").
std::string host_name(const std::string& host_header) {
  std::string h = host_header;
  if (!h.empty() && h[0] == '[') {
    const size_t e = h.find(']');
    h = e == std::string::npos ? h : h.substr(0, e + 1);
  } else if (const size_t c = h.rfind(':'); c != std::string::npos) {
    h = h.substr(0, c);
  }
  for (char& c : h) c = char(std::tolower(static_cast<unsigned char>(c)));
  return h;
}

}  // namespace

bool is_loopback_host(const std::string& host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  in_addr a4{};
  if (::inet_pton(AF_INET, host.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  return false;
}

struct LiveServer::Impl {
  std::string run_dir;
  ServeOptions opt;
  httplib::Server svr;
  std::thread thread;
  int port = 0;
  bool loopback = true;

  std::mutex mu;  // guards everything below
  RunReader reader;
  std::chrono::steady_clock::time_point last_refresh{};
  uint64_t cached_version = 0;
  std::string cached_view;  // the JSON of /api/run for cached_version

  // Several runs: the compare page, from these instead of `reader`.
  std::unique_ptr<CompareSource> compare;

  Impl(std::string dir, ServeOptions o) : run_dir(dir), opt(std::move(o)), reader(std::move(dir)) {}

  // Reads what is new (at most a few times a second however many pages poll) and returns the
  // current version; the view is rebuilt only when something changed.
  uint64_t refresh_locked() {
    const auto now = std::chrono::steady_clock::now();
    if (cached_view.empty() || now - last_refresh >= std::chrono::milliseconds(opt.refresh_ms)) {
      if (!compare) reader.refresh();
      last_refresh = now;
      const uint64_t v = compare ? compare->refresh() : reader.version();
      if (cached_view.empty() || v != cached_version) {
        ViewOptions vo;
        vo.live = true;
        nlohmann::json view = compare ? compare->view() : reader.view(vo);
        view["version"] = std::to_string(v);
        cached_view = dump_for_page(view);
        cached_version = v;
      }
    }
    return cached_version;
  }

  // Request threads, socket options, timeouts and headers.
  void configure() {
    const int threads = std::max(1, opt.threads), max_threads = opt.max_threads;
    const bool low = opt.low_priority;
    svr.new_task_queue = [threads, max_threads, low] {
      return new Pool(threads, max_threads, low);
    };
    // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, which would let a second server
    // bind the same port silently and take half of the requests.
    svr.set_socket_options([](socket_t sock) {
      int yes = 1;
      ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    svr.set_keep_alive_timeout(2);
    svr.set_read_timeout(std::max(1, opt.idle_timeout_s));
    svr.set_write_timeout(5);
    svr.set_payload_max_length(4096);  // GET only: no request carries a body
    svr.set_default_headers({{"Cache-Control", "no-store"},
                             {"X-Content-Type-Options", "nosniff"},
                             {"Referrer-Policy", "no-referrer"}});
  }

  // Read-only, and on loopback for pages of this machine only.
  void guard_requests() {
    svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      // No compression: Debian's httplib would answer "Accept-Encoding: br" with brotli at its
      // highest quality, about 2 s of CPU for the data of a 100,000-step run, every second,
      // taken from the trainer. (The request is httplib's own non-const object, passed as const.)
      const_cast<httplib::Request&>(req).headers.erase("Accept-Encoding");
      if (req.method != "GET" && req.method != "HEAD") {
        res.status = 405;
        res.set_header("Allow", "GET, HEAD");
        res.set_content("read-only: GET only\n", "text/plain");
        return httplib::Server::HandlerResponse::Handled;
      }
      // On loopback, only pages that name this machine may ask (a web page elsewhere that
      // rebinds its own name to 127.0.0.1 must not read the run).
      if (loopback && !is_loopback_host(host_name(req.get_header_value("Host")))) {
        res.status = 403;
        res.set_content("this server answers requests for localhost only\n", "text/plain");
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
  }

  void add_routes() {
    svr.Get("/", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(compare ? render_compare_page(nullptr, true) : render_page(nullptr, true),
                      "text/html; charset=utf-8");
    });
    svr.Get("/api/run", [this](const httplib::Request& req, httplib::Response& res) {
      std::string body;
      {
        std::lock_guard<std::mutex> lk(mu);
        const uint64_t v = refresh_locked();
        if (req.has_param("v") && req.get_param_value("v") == std::to_string(v))
          body = R"({"unchanged":true})";
        else
          body = cached_view;
      }
      res.set_content(std::move(body), "application/json; charset=utf-8");
    });
    svr.Get("/report.html", [this](const httplib::Request&, httplib::Response& res) {
      nlohmann::json view;
      {
        std::lock_guard<std::mutex> lk(mu);
        if (compare)
          compare->refresh();
        else
          reader.refresh();
        view = compare ? compare->view() : reader.view(ViewOptions{});
      }
      res.set_header("Content-Disposition", "inline; filename=\"report.html\"");
      res.set_content(compare ? render_compare_page(view, false) : render_page(view, false),
                      "text/html; charset=utf-8");
    });
    svr.Get("/favicon.ico",
            [](const httplib::Request&, httplib::Response& res) { res.status = 204; });
  }

  void add_error_handlers() {
    svr.set_error_handler([](const httplib::Request&, httplib::Response& res) {
      if (res.body.empty())
        res.set_content(fmt::format("{} (this server has /, /api/run and /report.html)\n",
                                    res.status == 404 ? "not found" : "error"),
                        "text/plain");
    });
    svr.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
          std::string what = "unknown error";
          try {
            if (ep) std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            what = e.what();
          } catch (...) {
          }
          res.status = 500;
          res.set_content("error: " + what + "\n", "text/plain");
        });
  }

  // Binds (ServeError when it cannot) and serves on a thread of its own.
  void start() {
    const bool low = opt.low_priority;
    if (opt.port == 0) {
      port = svr.bind_to_any_port(opt.host);
    } else if (svr.bind_to_port(opt.host, opt.port)) {
      port = opt.port;
    } else {
      port = -1;
    }
    if (port <= 0)
      throw ServeError(fmt::format(
          "cannot listen on {}:{} (the port is in use, or the address is not one of this "
          "machine's)",
          opt.host, opt.port));
    thread = std::thread([this, low] {
      if (low) lower_priority();
      svr.listen_after_bind();
    });
    // stop() only takes effect once the server runs: wait for that (a moment).
    for (int i = 0; i < 5000 && !svr.is_running(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
};

LiveServer::LiveServer(std::string run_dir, ServeOptions opt) {
  // A FIFO or device among the run's files would block or exhaust every request: refused here.
  if (const std::string why = unreadable_run_file(run_dir); !why.empty()) throw ServeError(why);
  impl_ = std::make_unique<Impl>(std::move(run_dir), std::move(opt));
  impl_->loopback = is_loopback_host(impl_->opt.host);
  impl_->configure();
  impl_->guard_requests();
  impl_->add_routes();
  impl_->add_error_handlers();
  impl_->start();
}

LiveServer::LiveServer(std::unique_ptr<CompareSource> runs, ServeOptions opt)
    : impl_(std::make_unique<Impl>(std::string(), std::move(opt))) {
  impl_->compare = std::move(runs);
  impl_->loopback = is_loopback_host(impl_->opt.host);
  impl_->configure();
  impl_->guard_requests();
  impl_->add_routes();
  impl_->add_error_handlers();
  impl_->start();
}

LiveServer::~LiveServer() {
  stop();
}

void LiveServer::stop() {
  if (!impl_) return;
  impl_->svr.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

int LiveServer::port() const {
  return impl_->port;
}

std::string LiveServer::url() const {
  const std::string& h = impl_->opt.host;
  const bool v6 = h.find(':') != std::string::npos && h.front() != '[';
  return fmt::format("http://{}:{}/", v6 ? "[" + h + "]" : h, impl_->port);
}

}  // namespace cllm::run
