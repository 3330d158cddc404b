#include "src/cluster_guard.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#include "src/hmac.hpp"

namespace cllm {

namespace {

constexpr const char* kHello = "CLLMG1 ";  // then 32 hex digits of nonce and '\n'
constexpr size_t kHelloBytes = 7 + 32 + 1;

std::string expected_proof(const std::string& key, const std::string& nonce) {
  return hmac_sha256_hex(key, std::string("cllm guard v1") + '\0' + nonce);
}

bool send_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w, n -= size_t(w);
  }
  return true;
}

// Reads exactly n bytes into buf before the deadline; false on EOF, error or time out.
bool read_exactly(int fd, char* buf, size_t n, double timeout_s) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  size_t got = 0;
  while (got < n) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          end - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, int(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    const ssize_t k = ::recv(fd, buf + got, n - got, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    got += size_t(k);
  }
  return true;
}

// A connected TCP socket to host:port, or -1.
int dial(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0) return -1;
  int fd = -1;
  for (addrinfo* a = res; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd >= 0 && ::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(res);
  if (fd >= 0) {
    const int one = 1;  // BASP sends small messages (heartbeats, acks): no Nagle delay
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}

// Listening socket on host:port; throws.
int listen_on(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0)
    throw std::runtime_error(fmt::format("cannot listen on {}:{}: unknown address", host, port));
  const int fd = ::socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
  const int one = 1;
  if (fd >= 0) ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const bool ok =
      fd >= 0 && ::bind(fd, res->ai_addr, res->ai_addrlen) == 0 && ::listen(fd, 64) == 0;
  const std::string why = ok ? std::string() : std::strerror(errno);
  ::freeaddrinfo(res);
  if (!ok) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error(fmt::format("cannot listen on {}:{}: {}", host, port, why));
  }
  return fd;
}

uint16_t local_port(int fd) {
  sockaddr_storage a{};
  socklen_t n = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&a)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port);
}

// The accept loop and the connection threads of a guard or dialer. Threads are detached and
// counted, so that a stream of refused peers leaves nothing behind; the destructor shuts every
// socket down (which ends their blocking calls) and waits for the count to reach zero.
class Relay {
 public:
  using Handler = std::function<void(int fd)>;
  Relay(int listen_fd, Handler on_connection)
      : listen_fd_(listen_fd), handler_(std::move(on_connection)) {
    start([this] { accept_loop(); });
  }
  ~Relay() {
    std::unique_lock<std::mutex> lk(mu_);
    stopping_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);  // ends accept()
    for (const int fd : open_) ::shutdown(fd, SHUT_RDWR);
    done_.wait(lk, [&] { return active_ == 0; });
    ::close(listen_fd_);
  }
  uint16_t port() const { return local_port(listen_fd_); }

  // Registers a socket so that the destructor can shut it down; false when stopping (then it is
  // closed here).
  bool track(int fd) {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_) {
      ::close(fd);
      return false;
    }
    open_.insert(fd);
    return true;
  }
  void close_tracked(int fd) {
    std::lock_guard<std::mutex> lk(mu_);
    open_.erase(fd);
    ::close(fd);
  }

  // Copies a -> b until either side ends, then the other direction (on a second thread); both
  // sockets are closed when both directions are done.
  void relay(int a, int b) {
    auto pumps = std::make_shared<std::atomic<int>>(2);
    const auto pump = [this, pumps, a, b](int from, int to) {
      char buf[1 << 16];
      for (;;) {
        const ssize_t n = ::recv(from, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || !send_all(to, buf, size_t(n))) break;
      }
      ::shutdown(to, SHUT_WR);
      ::shutdown(from, SHUT_RD);
      if (--*pumps == 0) close_tracked(a), close_tracked(b);
    };
    start([pump, a, b] { pump(b, a); });
    pump(a, b);
  }

  void start(std::function<void()> fn) {
    std::lock_guard<std::mutex> lk(mu_);
    ++active_;
    std::thread([this, fn = std::move(fn)] {
      fn();
      std::lock_guard<std::mutex> lk2(mu_);
      --active_;
      done_.notify_all();
    }).detach();
  }

 private:
  void accept_loop() {
    for (;;) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        std::lock_guard<std::mutex> lk(mu_);
        if (stopping_) return;
        continue;  // EMFILE and the like: keep serving the connections there are
      }
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (!track(fd)) return;
      start([this, fd] { handler_(fd); });
    }
  }

  int listen_fd_;
  Handler handler_;
  std::mutex mu_;
  std::condition_variable done_;
  std::set<int> open_;
  int active_ = 0;
  bool stopping_ = false;
};

}  // namespace

std::string peer_name(int fd) {
  sockaddr_storage a{};
  socklen_t n = sizeof a;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &n) != 0) return "unknown";
  char host[NI_MAXHOST] = {}, port[NI_MAXSERV] = {};
  if (::getnameinfo(reinterpret_cast<sockaddr*>(&a), n, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return "unknown";
  return fmt::format("{}:{}", host, port);
}

struct ClusterGuard::Impl {
  std::function<void(const std::string&)> log;
  std::string key;
  uint16_t inner_port = 0;
  std::atomic<int> pending{0};
  std::atomic<uint64_t> refused{0};
  std::atomic<int> logged{0};
  std::unique_ptr<Relay> relay;

  void serve(int fd) {
    // Before the proof the peer gets no more than this: one fixed buffer, one thread, a few
    // seconds, and only kMaxPendingProofs of them at once.
    if (++pending > kMaxPendingProofs) {
      --pending, ++refused;
      relay->close_tracked(fd);
      return;
    }
    const std::string nonce = random_hex(16);
    const std::string hello = kHello + nonce + "\n";
    char proof[kProofBytes];
    const bool complete = send_all(fd, hello.data(), hello.size()) &&
                          read_exactly(fd, proof, kProofBytes, kProofTimeoutS);
    const bool proven = complete && constant_time_equal(std::string_view(proof, kProofBytes),
                                                        expected_proof(key, nonce));
    --pending;
    // The verdict, so that a node with another key can say so instead of dialing again.
    if (!send_all(fd, proven ? "OK\n" : "NO\n", 3) || !proven) {
      ++refused;
      // Logged for the first few only: a flood of wrong proofs must not flood the log.
      if (complete && !proven && log && ++logged <= 10)
        log(
            fmt::format("refused node at {}: wrong cluster key (its first 64 bytes are not the "
                        "key's proof)",
                        peer_name(fd)));
      relay->close_tracked(fd);
      return;
    }
    const int inner = dial("127.0.0.1", inner_port);
    if (inner < 0 || !relay->track(inner)) {
      if (inner >= 0) ::close(inner);
      relay->close_tracked(fd);
      return;
    }
    relay->relay(fd, inner);
  }
};

ClusterGuard::ClusterGuard(const std::string& host, uint16_t port, std::string key,
                           uint16_t inner_port, std::function<void(const std::string&)> log)
    : impl_(std::make_unique<Impl>()) {
  impl_->log = std::move(log);
  impl_->key = std::move(key);
  impl_->inner_port = inner_port;
  const int fd = listen_on(host, port);
  Impl* impl = impl_.get();
  impl_->relay = std::make_unique<Relay>(fd, [impl](int c) { impl->serve(c); });
}

ClusterGuard::~ClusterGuard() = default;

uint16_t ClusterGuard::port() const {
  return impl_->relay->port();
}

uint64_t ClusterGuard::refused() const {
  return impl_->refused;
}

struct GuardDialer::Impl {
  std::string host, key;
  uint16_t port = 0;
  std::mutex mu;
  std::string refusal;  // guarded by mu
  std::unique_ptr<Relay> relay;

  void refuse(const std::string& why) {
    std::lock_guard<std::mutex> lk(mu);
    refusal = why;
  }

  void serve(int local) {
    const int out = dial(host, port);
    if (out < 0 || !relay->track(out)) {
      if (out >= 0) ::close(out);
      relay->close_tracked(local);  // the node's actor system sees the root as unreachable
      return;
    }
    const auto give_up = [&] {
      relay->close_tracked(out);
      relay->close_tracked(local);
    };
    // A guarded root speaks first with its hello; a root without one starts BASP's handshake,
    // which is passed on as it is (its first 7 bytes included).
    char hello[kHelloBytes];
    if (!read_exactly(out, hello, 7, kProofTimeoutS)) return give_up();
    if (std::memcmp(hello, kHello, 7) != 0) {
      if (!send_all(local, hello, 7)) return give_up();
      return relay->relay(local, out);
    }
    if (key.empty()) {
      refuse("the root requires a cluster key; pass --cluster-key with the root's key file");
      return give_up();
    }
    char verdict[3];
    if (!read_exactly(out, hello + 7, kHelloBytes - 7, kProofTimeoutS) ||
        hello[kHelloBytes - 1] != '\n')
      return give_up();
    const std::string proof = expected_proof(key, std::string(hello + 7, 32));
    if (!send_all(out, proof.data(), proof.size()) ||
        !read_exactly(out, verdict, 3, kProofTimeoutS))
      return give_up();
    if (std::memcmp(verdict, "OK\n", 3) != 0) {
      refuse("the root refused this node: wrong cluster key");
      return give_up();
    }
    relay->relay(local, out);
  }
};

GuardDialer::GuardDialer(std::string root_host, uint16_t root_port, std::string key)
    : impl_(std::make_unique<Impl>()) {
  impl_->host = std::move(root_host);
  impl_->port = root_port;
  impl_->key = std::move(key);
  const int fd = listen_on("127.0.0.1", 0);
  Impl* impl = impl_.get();
  impl_->relay = std::make_unique<Relay>(fd, [impl](int c) { impl->serve(c); });
}

GuardDialer::~GuardDialer() = default;

uint16_t GuardDialer::port() const {
  return impl_->relay->port();
}

std::string GuardDialer::refusal() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return impl_->refusal;
}

}  // namespace cllm
