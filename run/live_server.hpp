#pragma once
// The live page of a run (`cllm serve RUN_DIR`, `cllm train --serve PORT`): an HTTP server
// (Debian's cpp-httplib) that answers a fixed set of GET paths from the run folder, read-only.
//
//   /            the page (the report's page, which fetches /api/run about once a second)
//   /api/run     the page's data as JSON (?v=VERSION answers {"unchanged":true} when nothing
//                changed since the answer that carried VERSION)
//   /report.html a self-contained report of the run as it is now
//
// No part of a request is ever used as a file name. It runs in threads of low priority (nice
// 10) and reads only what was appended since the last request, so that a trainer serving its
// own page keeps its speed.
#include <memory>
#include <stdexcept>
#include <string>

namespace cllm::run {

class CompareSource;

struct ServeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0 = any free port (see LiveServer::port)
  // Request threads: `threads` start at once, more (up to max_threads) when every one is busy.
  // httplib gives each open connection a thread until it closes or idles out, so a few idle
  // connections must not take them all: 100 idle ones still leave a thread for a request.
  int threads = 2;
  int max_threads = 128;
  int idle_timeout_s = 5;  // a connection that sends nothing this long is closed
  // The run folder is read again at most this often, however many pages poll (0: every request).
  int refresh_ms = 250;
  bool low_priority = true;
};

// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback_host(const std::string& host);

class LiveServer {
 public:
  // Binds at once (throws ServeError when it cannot) and serves in background threads.
  LiveServer(std::string run_dir, ServeOptions opt);
  // The compare page of several runs (run/compare.hpp's CompareSource) on the same paths.
  LiveServer(std::unique_ptr<CompareSource> runs, ServeOptions opt);
  ~LiveServer();  // stops and joins
  LiveServer(const LiveServer&) = delete;
  LiveServer& operator=(const LiveServer&) = delete;

  int port() const;
  std::string url() const;  // http://HOST:PORT/
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cllm::run
