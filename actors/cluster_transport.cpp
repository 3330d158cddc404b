#include "actors/cluster_transport.hpp"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>

#include "src/config.hpp"

namespace cllm {

namespace {

struct CtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* c) const { X509_STORE_CTX_free(c); }
};
using CtxPtr = std::unique_ptr<SSL_CTX, CtxFree>;

// An encrypted key would make OpenSSL ask on the terminal; refuse it instead (CAF would need the
// passphrase in its configuration).
int no_passphrase(char*, int, int, void*) {
  return 0;
}

// The reason of OpenSSL's newest error ("certificate verify failed"), and the queue emptied.
std::string ssl_reason() {
  unsigned long last = 0;
  while (unsigned long e = ERR_get_error()) last = e;
  const char* r = last ? ERR_reason_error_string(last) : nullptr;
  return r ? r : "unknown error";
}

// A context holding this side's certificate, key and CA, as CAF's sessions will build it.
CtxPtr credentials_ctx(const TlsFiles& tls, const SSL_METHOD* method) {
  ERR_clear_error();
  CtxPtr ctx(SSL_CTX_new(method));
  if (!ctx) throw ConfigError("cannot create an OpenSSL context: " + ssl_reason());
  SSL_CTX_set_default_passwd_cb(ctx.get(), no_passphrase);
  // The key first: loading a certificate that does not match it drops the key, and the check
  // below then names the mismatch (the other order fails on the key with a vaguer reason).
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), tls.key.c_str(), SSL_FILETYPE_PEM) != 1)
    throw ConfigError(fmt::format(
        "--tls-key {} holds no usable PEM private key (an encrypted key is not supported) ({})",
        tls.key, ssl_reason()));
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), tls.cert.c_str()) != 1)
    throw ConfigError(
        fmt::format("--tls-cert {} holds no usable PEM certificate ({})", tls.cert, ssl_reason()));
  if (SSL_CTX_check_private_key(ctx.get()) != 1)
    throw ConfigError(fmt::format("--tls-key {} does not match the certificate --tls-cert {}",
                                  tls.key, tls.cert));
  if (SSL_CTX_load_verify_locations(ctx.get(), tls.ca.c_str(), nullptr) != 1)
    throw ConfigError(
        fmt::format("--tls-ca {} holds no usable PEM certificate ({})", tls.ca, ssl_reason()));
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  return ctx;
}

void check_readable(const char* option, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in || in.peek() == std::ifstream::traits_type::eof())
    throw ConfigError(fmt::format("cannot read {} {}: {}", option, path,
                                  in ? "the file is empty" : std::strerror(errno)));
}

// A blocking TCP connection with `timeout_s` on connect, reads and writes; -1 when none.
int dial_tcp(const std::string& host, uint16_t port, int timeout_s) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) return -1;
  int fd = -1;
  for (addrinfo* a = found; a && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    timeval tv{timeout_s, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // bounds connect() too
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) ::close(fd), fd = -1;
  }
  ::freeaddrinfo(found);
  return fd;
}

}  // namespace

void check_tls_files(const TlsFiles& tls) {
  if (!tls.enabled()) return;
  const char* missing = tls.cert.empty()  ? "--tls-cert"
                        : tls.key.empty() ? "--tls-key"
                        : tls.ca.empty()  ? "--tls-ca"
                                          : nullptr;
  if (missing)
    throw ConfigError(
        fmt::format("--tls-cert, --tls-key and --tls-ca go together; {} is missing", missing));
  check_readable("--tls-cert", tls.cert);
  check_readable("--tls-key", tls.key);
  check_readable("--tls-ca", tls.ca);
  CtxPtr ctx = credentials_ctx(tls, TLS_method());
  // The peers verify this certificate against their CA, the same file: a certificate it does not
  // sign would only be refused at every connection.
  // (with the intermediates of --tls-cert, which the handshake sends along)
  STACK_OF(X509)* chain = nullptr;
  SSL_CTX_get0_chain_certs(ctx.get(), &chain);
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> check(X509_STORE_CTX_new());
  if (!check || X509_STORE_CTX_init(check.get(), SSL_CTX_get_cert_store(ctx.get()),
                                    SSL_CTX_get0_certificate(ctx.get()), chain) != 1)
    throw ConfigError("cannot check --tls-cert against --tls-ca: " + ssl_reason());
  if (X509_verify_cert(check.get()) != 1)
    throw ConfigError(
        fmt::format("--tls-cert {} does not verify against --tls-ca {} ({})", tls.cert, tls.ca,
                    X509_verify_cert_error_string(X509_STORE_CTX_get_error(check.get()))));
}

void load_cluster_transport(caf::actor_system_config& cfg, const TlsFiles& tls) {
  cfg.load<caf::io::middleman>();
  if (!tls.enabled()) return;
  // With any of these set, CAF's sessions require and verify the peer's certificate on both
  // sides (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, libcaf_openssl/session.cpp).
  cfg.openssl_certificate = tls.cert;
  cfg.openssl_key = tls.key;
  cfg.openssl_cafile = tls.ca;
  cfg.load<caf::openssl::manager>();
}

caf::expected<uint16_t> publish_on_cluster(caf::actor_system& sys, const gateway_actor& whom,
                                           uint16_t port, const std::string& host) {
  if (sys.has_openssl_manager())
    return caf::openssl::publish(whom, port, host.c_str(), /*reuse=*/true);
  return sys.middleman().publish(whom, port, host.c_str(), /*reuse=*/true);
}

caf::io::middleman_actor cluster_dialer(caf::actor_system& sys) {
  return sys.has_openssl_manager() ? sys.openssl_manager().actor_handle()
                                   : sys.middleman().actor_handle();
}

std::string tls_refusal(const std::string& host, uint16_t port, const TlsFiles& tls) {
  constexpr int kProbeTimeoutS = 3;
  const std::string where = fmt::format("{}:{}", host, port);
  CtxPtr ctx;
  try {
    ctx = tls.enabled() ? credentials_ctx(tls, TLS_client_method())
                        : CtxPtr(SSL_CTX_new(TLS_client_method()));
  } catch (const ConfigError&) {
    return "";  // checked at start; a file changed since is not the root's doing
  }
  if (!ctx) return "";
  // Without TLS of its own the probe only asks whether the root speaks TLS: it takes any
  // certificate and offers none.
  if (!tls.enabled()) SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  const int fd = dial_tcp(host, port, kProbeTimeoutS);
  if (fd < 0) return "";  // no one there: not a refusal
  std::unique_ptr<SSL, SslFree> ssl(SSL_new(ctx.get()));
  if (!ssl) return ::close(fd), "";
  SSL_set_fd(ssl.get(), fd);
  ERR_clear_error();
  const int done = SSL_connect(ssl.get());
  // Only a TLS protocol error is a refusal; a connection that closed or timed out (a root going
  // away or busy) is not, and the node dials again.
  const bool tls_error = done != 1 && SSL_get_error(ssl.get(), done) == SSL_ERROR_SSL;
  const long verify = SSL_get_verify_result(ssl.get());
  const bool root_speaks_tls = SSL_get0_peer_certificate(ssl.get()) != nullptr;
  std::string why;
  if (!tls.enabled()) {
    if (root_speaks_tls)
      why = fmt::format(
          "the root at {} requires TLS: give this node --tls-cert, --tls-key and "
          "--tls-ca (see docs/cluster.md)",
          where);
  } else if (done != 1) {
    if (tls_error && verify != X509_V_OK)
      why = fmt::format(
          "the root at {} has a certificate that does not verify against --tls-ca "
          "{} ({})",
          where, tls.ca, X509_verify_cert_error_string(verify));
    else if (tls_error && !root_speaks_tls)
      why = fmt::format(
          "the root at {} does not speak TLS (is it started without --tls-cert?): "
          "{}",
          where, ssl_reason());
    else if (tls_error)
      why = fmt::format("the root at {} refused the TLS handshake ({})", where, ssl_reason());
  } else {
    // TLS 1.3: the root checks this node's certificate after the client's side of the handshake
    // is done, and answers a refusal with an alert instead of its first data.
    char byte = 0;
    ERR_clear_error();
    const int got = SSL_peek(ssl.get(), &byte, 1);
    if (got <= 0 && SSL_get_error(ssl.get(), got) == SSL_ERROR_SSL)
      why = fmt::format("the root at {} refused this node's certificate ({})", where, ssl_reason());
  }
  ERR_clear_error();
  ::close(fd);
  return why;
}

caf::actor spawn_tls_prober(caf::actor_system& sys, const TlsFiles& tls) {
  // The files come as a spawn argument: CAF 0.17 binds a function without arguments through a
  // null pointer (UBSan reports it), so every actor here is spawned with one.
  return sys.spawn<caf::detached>(
      [](caf::event_based_actor* self, const TlsFiles& files) -> caf::behavior {
        return {[self, files](const std::string& host, uint16_t port) {
          self->quit();
          return tls_refusal(host, port, files);
        }};
      },
      tls);
}

}  // namespace cllm
