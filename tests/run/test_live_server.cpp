// The live page's server over loopback (httplib's client): the fixed set of GET paths, nothing
// from a request reaching the filesystem, read-only, loopback names only, and a run folder that
// changes, breaks or disappears under it.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "run/live_server.hpp"
#include "tests/temp_dir.hpp"

namespace fs = std::filesystem;
using cllm::run::LiveServer;
using cllm::run::ServeError;
using cllm::run::ServeOptions;
using nlohmann::json;

namespace {

using cllm::test::TempDir;

std::string line(int64_t step, double loss) {
  return json({{"step", step}, {"loss", loss}, {"tokens_per_s", 1e3}, {"step_ms", 10.0}}).dump() +
         "\n";
}

// Any free port; the run folder read again on every request (refresh_ms 0), so that a test sees
// a change at once instead of sleeping past the server's throttle.
ServeOptions any_port() {
  ServeOptions o;
  o.port = 0;
  o.refresh_ms = 0;
  return o;
}

httplib::Client client(const LiveServer& s) {
  httplib::Client c("127.0.0.1", s.port());
  c.set_connection_timeout(5);
  c.set_read_timeout(10);
  return c;
}

}  // namespace

TEST_CASE("live server: the page, its data, and nothing else", "[run]") {
  TempDir t("cllm-serve");
  const fs::path dir = t.path / "run";
  fs::create_directories(dir);
  std::ofstream(dir / "metrics.jsonl") << line(1, 5.0) << line(2, 4.0);
  std::ofstream(dir / "config.json") << R"({"run": {"steps": 100}})";
  std::ofstream(t.path / "secret.txt") << "do not serve me";
  LiveServer srv(dir.string(), any_port());
  REQUIRE(srv.port() > 0);
  auto c = client(srv);

  auto page = c.Get("/");
  REQUIRE(page);
  CHECK(page->status == 200);
  CHECK(page->get_header_value("Content-Type").find("text/html") == 0);
  CHECK(page->body.find("data-mode=\"live\"") != std::string::npos);
  CHECK(page->body.find("connect-src 'self'") != std::string::npos);

  auto api = c.Get("/api/run");
  REQUIRE(api);
  CHECK(api->status == 200);
  const json v = json::parse(api->body);
  CHECK(v["progress"]["step"] == 2);
  CHECK(v["progress"]["steps"] == 100);
  CHECK(v["meta"]["live"] == true);
  const std::string version = v["version"];

  // Nothing new: a short answer.
  auto same = c.Get(("/api/run?v=" + version).c_str());
  REQUIRE(same);
  CHECK(json::parse(same->body) == json({{"unchanged", true}}));
  // New rows: the full data again.
  std::ofstream(dir / "metrics.jsonl", std::ios::app) << line(3, 3.0);
  auto more = c.Get(("/api/run?v=" + version).c_str());
  REQUIRE(more);
  CHECK(json::parse(more->body)["progress"]["step"] == 3);

  // Never compressed (brotli would cost the trainer seconds of CPU per request).
  auto br = c.Get("/api/run", {{"Accept-Encoding", "gzip, deflate, br"}});
  REQUIRE(br);
  CHECK(br->get_header_value("Content-Encoding").empty());
  auto br_page = c.Get("/", {{"Accept-Encoding", "br"}});
  REQUIRE(br_page);
  CHECK(br_page->get_header_value("Content-Encoding").empty());

  auto report = c.Get("/report.html");
  REQUIRE(report);
  CHECK(report->status == 200);
  CHECK(report->body.find("data-mode=\"report\"") != std::string::npos);

  // No request path reaches the filesystem: the run's own files, paths that climb out, and
  // encoded variants are all 404.
  for (const char* path : {"/metrics.jsonl", "/config.json", "/../secret.txt", "/..%2fsecret.txt",
                           "/%2e%2e/secret.txt", "/api/../../secret.txt", "/etc/passwd",
                           "/api/run/../../secret.txt", "/index.html"}) {
    auto r = c.Get(path);
    INFO(path);
    REQUIRE(r);
    CHECK(r->status == 404);
    CHECK(r->body.find("do not serve me") == std::string::npos);
  }
  // Read-only.
  auto post = c.Post("/api/run", "x", "text/plain");
  REQUIRE(post);
  CHECK(post->status == 405);
  auto del = c.Delete("/");
  REQUIRE(del);
  CHECK(del->status == 405);
  // A page elsewhere whose name was rebound to 127.0.0.1 gets nothing.
  auto evil = c.Get("/api/run", {{"Host", "evil.example:80"}});
  REQUIRE(evil);
  CHECK(evil->status == 403);
  auto local = c.Get("/api/run", {{"Host", "localhost:" + std::to_string(srv.port())}});
  REQUIRE(local);
  CHECK(local->status == 200);
}

TEST_CASE("live server: a broken or vanished run folder is a message, not a crash", "[run]") {
  TempDir t("cllm-serve");
  const fs::path dir = t.path / "run";
  fs::create_directories(dir);
  std::ofstream(dir / "metrics.jsonl") << line(1, 5.0) << "{\"step\": 2, \"lo";
  std::ofstream(dir / "spheres.json") << "[{";
  LiveServer srv(dir.string(), any_port());
  auto c = client(srv);
  auto r = c.Get("/api/run");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  json v = json::parse(r->body);
  CHECK(v["progress"]["step"] == 1);
  std::string notices = v["notices"].dump();
  CHECK(notices.find("incomplete line") != std::string::npos);
  CHECK(notices.find("spheres.json is not valid JSON") != std::string::npos);

  fs::remove_all(dir);
  r = c.Get("/api/run");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  v = json::parse(r->body);
  CHECK(v["status"]["state"] == "gone");
  CHECK(v["progress"]["step"] == 1);  // what was read before
  // And it comes back.
  fs::create_directories(dir);
  std::ofstream(dir / "metrics.jsonl") << line(1, 5.0) << line(2, 4.0);
  r = c.Get("/api/run");
  REQUIRE(r);
  v = json::parse(r->body);
  CHECK(v["status"]["state"] == "running");
  CHECK(v["progress"]["step"] == 2);
}

TEST_CASE("live server: a port in use is refused with a clear error", "[run]") {
  TempDir t("cllm-serve");
  LiveServer first(t.path.string(), any_port());
  ServeOptions o;
  o.port = first.port();
  try {
    LiveServer second(t.path.string(), o);
    FAIL("a second server bound port " << o.port);
  } catch (const ServeError& e) {
    CHECK(std::string(e.what()).find("cannot listen on 127.0.0.1:" + std::to_string(o.port)) == 0);
  }
  CHECK(cllm::run::is_loopback_host("127.0.0.1"));
  CHECK(cllm::run::is_loopback_host("127.3.4.5"));
  CHECK(cllm::run::is_loopback_host("localhost"));
  CHECK(cllm::run::is_loopback_host("::1"));
  CHECK_FALSE(cllm::run::is_loopback_host("0.0.0.0"));
  CHECK_FALSE(cllm::run::is_loopback_host("192.168.1.10"));
}

TEST_CASE("live server: the folder is read at most every refresh_ms however often pages poll",
          "[run]") {
  TempDir t("cllm-serve");
  const fs::path dir = t.path / "run";
  fs::create_directories(dir);
  std::ofstream(dir / "metrics.jsonl") << line(1, 5.0);
  ServeOptions o = any_port();
  o.refresh_ms = 3600 * 1000;  // not within this test
  LiveServer srv(dir.string(), o);
  auto c = client(srv);
  auto first = c.Get("/api/run");
  REQUIRE(first);
  const json v = json::parse(first->body);
  CHECK(v["progress"]["step"] == 1);
  std::ofstream(dir / "metrics.jsonl", std::ios::app) << line(2, 4.0);
  auto again = c.Get(("/api/run?v=" + v["version"].get<std::string>()).c_str());
  REQUIRE(again);
  CHECK(json::parse(again->body) == json({{"unchanged", true}}));  // not read again yet
}

// Finding (issue 19): two request threads, each held by an open connection until it idles out,
// so a few idle connections stalled every request for seconds.
TEST_CASE("live server: 100 idle connections do not hold up a request", "[run]") {
  TempDir t("cllm-serve");
  const fs::path dir = t.path / "run";
  fs::create_directories(dir);
  std::ofstream(dir / "metrics.jsonl") << line(1, 5.0);
  ServeOptions o = any_port();
  o.idle_timeout_s = 600;  // an idle connection keeps its thread for the whole test
  LiveServer srv(dir.string(), o);
  std::vector<int> idle;
  for (int i = 0; i < 100; ++i) {
    const int s = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(s >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(srv.port()));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    idle.push_back(s);  // connected, and never sends a byte
  }
  auto c = client(srv);  // its read timeout (10 s) only guards against a hang
  auto r = c.Get("/api/run");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(json::parse(r->body)["progress"]["step"] == 1);
  for (const int s : idle) ::close(s);
}

TEST_CASE("live server: a run file that is a FIFO is refused up front", "[run]") {
  TempDir t("cllm-serve");
  const fs::path dir = t.path / "run";
  fs::create_directories(dir);
  REQUIRE(::mkfifo((dir / "metrics.jsonl").c_str(), 0644) == 0);
  try {
    LiveServer srv(dir.string(), any_port());
    FAIL("served a run whose metrics.jsonl is a FIFO");
  } catch (const ServeError& e) {
    CHECK(std::string(e.what()).find("FIFO") != std::string::npos);
  }
}
