#include "browser/cdp.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace cdp {

namespace {

using clock_type = std::chrono::steady_clock;

std::chrono::duration<double> secs(double s) {
  return std::chrono::duration<double>(s);
}

std::string base64_decode(const std::string& in) {
  static int table[256];
  static bool init = false;
  if (!init) {
    for (int& t : table) t = -1;
    const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; ++i) table[static_cast<unsigned char>(a[i])] = i;
    init = true;
  }
  std::string out;
  out.reserve(in.size() * 3 / 4);
  int val = 0, bits = -8;
  for (unsigned char c : in) {
    if (table[c] < 0) continue;  // '=' and whitespace
    val = (val << 6) | table[c];
    bits += 6;
    if (bits >= 0) {
      out.push_back(char((val >> bits) & 0xff));
      bits -= 8;
    }
  }
  return out;
}

void write_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw BrowserError("the browser closed its pipe");
    done += size_t(n);
  }
}

}  // namespace

std::string chromium_path() {
  if (const char* env = std::getenv("CLLM_CHROMIUM"); env && *env) return env;
  return "/usr/bin/chromium";
}

Browser::Browser(const std::string& scratch_dir) {
  const std::string bin = chromium_path();
  if (::access(bin.c_str(), X_OK) != 0)
    throw BrowserError("no Chromium at " + bin +
                       ": the browser tests need Debian's chromium package (tools/install-deps.sh "
                       "installs it)");
  const std::string profile = scratch_dir + "/chromium-profile";
  ::mkdir(profile.c_str(), 0700);
  log_path_ = scratch_dir + "/chromium.log";
  int to[2], from[2];
  if (::pipe2(to, O_CLOEXEC) != 0 || ::pipe2(from, O_CLOEXEC) != 0)
    throw BrowserError("pipe failed");
  std::vector<std::string> argv = {bin,
                                   "--headless",
                                   "--no-sandbox",
                                   "--disable-gpu",
                                   "--disable-quic",
                                   "--no-first-run",
                                   "--no-default-browser-check",
                                   "--disable-background-networking",
                                   "--disable-component-update",
                                   "--disable-sync",
                                   "--disable-extensions",
                                   "--disable-dev-shm-usage",
                                   "--hide-scrollbars",
                                   "--mute-audio",
                                   "--user-data-dir=" + profile,
                                   "--remote-debugging-pipe",
                                   "about:blank"};
  pid_ = ::fork();
  if (pid_ < 0) throw BrowserError("fork failed");
  if (pid_ == 0) {
    ::setpgid(0, 0);  // its own group: the destructor ends Chromium and all its helpers
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    // fds 3 (commands in) and 4 (answers out), placed via high numbers so none is clobbered.
    const int in = ::fcntl(to[0], F_DUPFD, 10), out = ::fcntl(from[1], F_DUPFD, 10);
    if (in < 0 || out < 0 || ::dup2(in, 3) < 0 || ::dup2(out, 4) < 0) ::_exit(126);
    const int null = ::open("/dev/null", O_RDONLY);
    const int log = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (null >= 0) ::dup2(null, 0);
    if (log >= 0) ::dup2(log, 1), ::dup2(log, 2);
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    ::execv(bin.c_str(), cargv.data());
    ::_exit(127);
  }
  ::setpgid(pid_, pid_);  // also from here: no race with the child's own call
  ::close(to[0]);
  ::close(from[1]);
  to_ = to[1];
  from_ = from[0];
  reader_ = std::thread([this] { reader(); });
  try {
    call("Browser.getVersion", json::object(), "", 60);
  } catch (const BrowserError& e) {
    std::string log;
    std::ifstream f(log_path_);
    std::getline(f, log, '\0');
    shutdown();
    throw BrowserError(std::string("Chromium did not start: ") + e.what() +
                       "; its output: " + log.substr(0, 2000));
  }
}

Browser::~Browser() {
  shutdown();
}

void Browser::shutdown() {
  if (pid_ <= 0) return;
  try {
    call("Browser.close", json::object(), "", 5);
  } catch (const BrowserError&) {
  }
  // Give it a moment to leave by itself, then end the whole group.
  const auto end = clock_type::now() + secs(5);
  int status = 0;
  bool reaped = false;
  while (clock_type::now() < end) {
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      reaped = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(-pid_, SIGKILL);
  if (!reaped)
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  if (to_ >= 0) ::close(to_);
  if (reader_.joinable()) reader_.join();
  if (from_ >= 0) ::close(from_);
  pid_ = -1;
}

void Browser::reader() {
  std::string buf;
  char chunk[65536];
  for (;;) {
    const ssize_t n = ::read(from_, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buf.append(chunk, size_t(n));
    size_t pos = 0;
    for (size_t z; (z = buf.find('\0', pos)) != std::string::npos; pos = z + 1) {
      json msg = json::parse(buf.begin() + long(pos), buf.begin() + long(z), nullptr, false);
      if (msg.is_discarded()) continue;
      std::lock_guard<std::mutex> lk(mu_);
      if (msg.contains("id"))
        answers_.push_back(std::move(msg));
      else
        events_.push_back(std::move(msg));
    }
    buf.erase(0, pos);
    cv_.notify_all();
  }
  std::lock_guard<std::mutex> lk(mu_);
  closed_ = true;
  cv_.notify_all();
}

json Browser::call(const std::string& method, const json& params, const std::string& session,
                   double timeout_s) {
  int64_t id;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (closed_) throw BrowserError(method + ": the browser is gone");
    id = ++next_id_;
  }
  json msg = {{"id", id}, {"method", method}, {"params", params}};
  if (!session.empty()) msg["sessionId"] = session;
  write_all(to_, msg.dump() + std::string(1, '\0'));
  std::unique_lock<std::mutex> lk(mu_);
  json answer;
  const bool got = cv_.wait_for(lk, secs(timeout_s), [&] {
    for (auto it = answers_.begin(); it != answers_.end(); ++it)
      if ((*it)["id"] == id) {
        answer = std::move(*it);
        answers_.erase(it);
        return true;
      }
    return closed_;
  });
  if (!got) throw BrowserError(method + ": no answer within " + std::to_string(timeout_s) + " s");
  if (answer.is_null()) throw BrowserError(method + ": the browser is gone");
  if (answer.contains("error"))
    throw BrowserError(method + ": " + answer["error"].value("message", answer["error"].dump()));
  return answer.value("result", json::object());
}

std::vector<json> Browser::events() const {
  std::lock_guard<std::mutex> lk(mu_);
  return events_;
}

size_t Browser::event_count() const {
  std::lock_guard<std::mutex> lk(mu_);
  return events_.size();
}

bool Browser::wait_event(const std::string& method, const std::string& session, size_t from,
                         double timeout_s) {
  std::unique_lock<std::mutex> lk(mu_);
  return cv_.wait_for(lk, secs(timeout_s), [&] {
    for (size_t i = from; i < events_.size(); ++i)
      if (events_[i].value("method", "") == method && events_[i].value("sessionId", "") == session)
        return true;
    return closed_;
  }) && !closed_;
}

Page::Page(Browser& b, int width, int height) : b_(b) {
  target_ = b_.call("Target.createTarget", {{"url", "about:blank"}})["targetId"];
  session_ =
      b_.call("Target.attachToTarget", {{"targetId", target_}, {"flatten", true}})["sessionId"];
  for (const char* domain : {"Page.enable", "Runtime.enable", "Log.enable"})
    b_.call(domain, json::object(), session_);
  b_.call("Emulation.setDeviceMetricsOverride",
          {{"width", width}, {"height", height}, {"deviceScaleFactor", 1}, {"mobile", false}},
          session_);
}

Page::~Page() {
  try {
    b_.call("Target.closeTarget", {{"targetId", target_}}, "", 5);
  } catch (const BrowserError&) {
  }
}

void Page::navigate(const std::string& url, double timeout_s) {
  const size_t from = b_.event_count();
  const json r = b_.call("Page.navigate", {{"url", url}}, session_, timeout_s);
  if (r.contains("errorText") && !r["errorText"].get<std::string>().empty())
    throw BrowserError("cannot load " + url + ": " + r["errorText"].get<std::string>());
  if (!b_.wait_event("Page.loadEventFired", session_, from, timeout_s))
    throw BrowserError("no load event for " + url);
}

json Page::eval(const std::string& expression, double timeout_s) {
  const json r =
      b_.call("Runtime.evaluate",
              {{"expression", expression}, {"returnByValue", true}, {"awaitPromise", true}},
              session_, timeout_s);
  if (r.contains("exceptionDetails")) {
    const auto& d = r["exceptionDetails"];
    std::string what = d.value("text", std::string("exception"));
    if (d.contains("exception")) what += " " + d["exception"].value("description", std::string());
    throw BrowserError("evaluating `" + expression + "`: " + what);
  }
  return r["result"].value("value", json());
}

bool Page::wait_for(const std::string& expression, double timeout_s) {
  const auto end = clock_type::now() + secs(timeout_s);
  const std::string test = "!!(" + expression + ")";
  while (clock_type::now() < end) {
    if (eval(test) == json(true)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

void Page::screenshot(const std::string& png_path) {
  const json m = b_.call("Page.getLayoutMetrics", json::object(), session_);
  const json& size = m.contains("cssContentSize") ? m["cssContentSize"] : m["contentSize"];
  const double w = size.value("width", 1280.0),
               hgt = std::min(size.value("height", 900.0), 16000.0);
  const json r =
      b_.call("Page.captureScreenshot",
              {{"format", "png"},
               {"captureBeyondViewport", true},
               {"clip", {{"x", 0}, {"y", 0}, {"width", w}, {"height", hgt}, {"scale", 1}}}},
              session_, 60);
  std::ofstream out(png_path, std::ios::binary | std::ios::trunc);
  out << base64_decode(r["data"].get<std::string>());
  if (!out) throw BrowserError("cannot write " + png_path);
}

std::vector<std::string> Page::console_errors() const {
  std::vector<std::string> out;
  for (const auto& e : b_.events()) {
    if (e.value("sessionId", "") != session_) continue;
    const std::string method = e.value("method", "");
    const json& p = e["params"];
    if (method == "Runtime.consoleAPICalled") {
      const std::string type = p.value("type", "");
      if (type != "error" && type != "assert") continue;
      std::string text = "console." + type + ":";
      for (const auto& a : p["args"])
        text += " " + (a.contains("value") ? (a["value"].is_string() ? a["value"].get<std::string>()
                                                                     : a["value"].dump())
                                           : a.value("description", std::string()));
      out.push_back(text);
    } else if (method == "Runtime.exceptionThrown") {
      const json& d = p["exceptionDetails"];
      std::string text = "uncaught: " + d.value("text", std::string());
      if (d.contains("exception")) text += " " + d["exception"].value("description", std::string());
      out.push_back(text);
    } else if (method == "Log.entryAdded") {
      const json& en = p["entry"];
      if (en.value("level", "") == "error")
        out.push_back("log (" + en.value("source", std::string()) + "): " +
                      en.value("text", std::string()) + " " + en.value("url", std::string()));
    }
  }
  return out;
}

}  // namespace cdp
