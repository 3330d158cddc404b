#pragma once
// A small client of the Chrome DevTools Protocol for the browser tests and the report benchmark:
// it starts Debian's headless Chromium with --remote-debugging-pipe (JSON messages separated by
// NUL bytes on file descriptors 3 and 4: no port, no WebSocket) and drives pages with it.
//
// Chromium runs in its own process group, killed with everything it started when the Browser
// goes (or when this process dies: PR_SET_PDEATHSIG). Every call has a time limit.
#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace cdp {

using json = nlohmann::json;

struct BrowserError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The Chromium binary: $CLLM_CHROMIUM, else /usr/bin/chromium.
std::string chromium_path();

class Browser {
 public:
  // Starts Chromium with a fresh profile under `scratch_dir`. Throws BrowserError when the
  // binary is missing or does not answer.
  explicit Browser(const std::string& scratch_dir);
  ~Browser();
  Browser(const Browser&) = delete;
  Browser& operator=(const Browser&) = delete;

  // Sends a command and waits for its answer (throws BrowserError on an error answer, a
  // timeout or a browser that went away).
  json call(const std::string& method, const json& params = json::object(),
            const std::string& session = "", double timeout_s = 30);
  // Events received so far (each {"method", "params", "sessionId"?}), in order.
  std::vector<json> events() const;
  // Waits until an event `method` of `session` arrives at index >= from; false on timeout.
  bool wait_event(const std::string& method, const std::string& session, size_t from,
                  double timeout_s);
  size_t event_count() const;
  const std::string& log_path() const { return log_path_; }

 private:
  void reader();
  void shutdown();
  pid_t pid_ = -1;
  int to_ = -1, from_ = -1;
  std::string log_path_;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<json> events_;
  std::vector<json> answers_;
  bool closed_ = false;
  int64_t next_id_ = 0;
};

class Page {
 public:
  Page(Browser& b, int width = 1280, int height = 900);
  ~Page();
  Page(const Page&) = delete;
  Page& operator=(const Page&) = delete;

  // Loads `url` and waits for its load event.
  void navigate(const std::string& url, double timeout_s = 60);
  // The value of a JavaScript expression (promises awaited); throws on an exception.
  json eval(const std::string& expression, double timeout_s = 30);
  // Waits until `expression` is truthy; false after timeout_s.
  bool wait_for(const std::string& expression, double timeout_s);
  // The whole page (not only the viewport) as a PNG file.
  void screenshot(const std::string& png_path);
  // console.error / console.assert calls, uncaught exceptions and the browser's own error
  // entries (failed loads, CSP violations) of this page so far.
  std::vector<std::string> console_errors() const;

 private:
  Browser& b_;
  std::string target_, session_;
};

}  // namespace cdp
