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
  int threads = 2;  // request threads
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
