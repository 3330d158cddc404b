#include "messages/cluster_checks.hpp"

#include <algorithm>
#include <cmath>
#include <exception>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "src/exact_sum.hpp"
#include "src/params.hpp"
#include "src/safe_text.hpp"
#include "src/sum_pack.hpp"

namespace cllm {

namespace {

// Visible ASCII only (ids and host names), 1 to `max` bytes.
bool plain_token(const std::string& s, size_t max) {
  if (s.empty() || s.size() > max) return false;
  for (unsigned char c : s)
    if (c < 0x21 || c > 0x7e) return false;
  return true;
}

// `s` in visible ASCII, any other byte as \xNN, cut after `max` bytes of input: text that stays
// one valid line however it is cut later (a refusal shows the first bytes of each field).
std::string ascii(const std::string& s, size_t max) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f)
      out += char(c);
    else
      out += fmt::format("\\x{:02x}", c);
  }
  if (s.size() > max) out += "...";
  return out;
}

bool finite_non_negative(double x) {
  return std::isfinite(x) && x >= 0;
}

std::string timing_problem(const StepTiming& t) {
  for (double ms : {t.compute_ms, t.fold_ms, t.reduce_ms, t.wait_ms, t.network_ms})
    if (!finite_non_negative(ms)) return "a timing that is not a duration";
  if (t.bytes_sent < 0 || t.bytes_received < 0 || t.spheres < 0) return "negative counts";
  // Only the root's links name nodes (a node's own subtree has none).
  if (!t.nodes.empty()) return "figures of other nodes";
  return {};
}

std::string faults_problem(FaultCounts& f) {
  for (int64_t n : {f.restarts, f.deadline_kills, f.subtree_restarts, f.nodes_joined, f.nodes_left,
                    f.nodes_lost, f.shards_redispatched})
    if (n < 0) return "negative fault counts";
  for (FaultEvent& e : f.events) {
    if (e.kind < FaultEvent::crashed || e.kind > FaultEvent::node_lost)
      return "a fault event of no known kind";
    e.reason = printable(e.reason, 500);
  }
  return {};
}

}  // namespace

std::string hello_problem(const JoinHello& h) {
  if (h.protocol != kClusterProtocol)
    return fmt::format("it speaks cluster protocol {}, this root {}", h.protocol, kClusterProtocol);
  if (!plain_token(h.node_id, 64) || !plain_token(h.host, 255) || h.nonce.size() != 32 ||
      h.spheres < 1 || h.threads < 1 || h.height < 0 || h.spheres > 1000000 || h.threads > 4096 ||
      (h.peer_port != 0 && !plain_token(h.peer_host, 255)))
    return "its hello is malformed";
  return {};
}

std::string hello_who(const JoinHello& h) {
  return plain_token(h.host, 255) ? "a node on " + h.host : "a node";
}

NumericsFingerprint fingerprint_from_wire(const Fingerprint& fp) {
  return {ascii(fp.probe_sha256, 200), ascii(fp.build_id, 500), ascii(fp.model, 200),
          ascii(fp.tokenizer, 200)};
}

std::string welcome_problem(const JoinWelcome& w, RunConfig& run) {
  try {
    run = RunConfig::from_json(nlohmann::json::parse(w.run_json));
    run.validate();
  } catch (const std::exception& e) {
    return "the root described a run this node cannot compute: " + printable(e.what(), 300);
  }
  return {};
}

std::string work_problem(const RunConfig& run, int64_t held_version, int64_t spreading,
                         const NodeWork& w) {
  const ParamLayout layout(run.model);
  if (w.set.shards.empty() || w.set.shards.size() > size_t(run.batch.shards()))
    return "a request with no shards or too many";
  for (int32_t s : w.set.shards)
    if (s < 0 || s >= w.work.shards || w.work.shards != run.batch.shards())
      return "a request for shards outside the step";
  if (w.set.tokens.size() != w.set.shards.size() * shard_tokens(run))
    return "token windows of the wrong size";
  for (int32_t t : w.set.tokens)
    if (t < 0 || t >= run.model.vocab) return "a token outside the vocabulary";
  if (w.work.grad_scale_exp.size() != layout.tensors().size())
    return "an exact-sum grid of the wrong size";
  for (int32_t e : w.work.grad_scale_exp)
    if (e < kMinExp || e > kMaxExp) return "an exact-sum grid out of range";
  if (w.work.step < 0 || w.work.attempt < 0 || w.ctl.delivery < 0 || w.weights_version < 0)
    return "a negative step, attempt, delivery or weights version";
  if (w.ctl.deadline_ms < 0 || w.ctl.deadline_ms > int64_t(1e12)) return "a deadline out of range";
  if (w.weights_version == spreading && w.weight_bytes == 0 && w.weight_chunks == 0) return {};
  if (w.weights_version != held_version &&
      (w.weight_bytes != layout.total() * sizeof(float) ||
       w.weight_chunks != int32_t((w.weight_bytes + kChunkBytes - 1) / kChunkBytes)))
    return "weights of the wrong size";
  return {};
}

PayloadAssembly weights_assembly(const NodeWork& w) {
  return PayloadAssembly(w.weight_bytes, kChunkBytes);
}

namespace {

// Peers named by index, host and port: 1 to kMaxPeers, each index once, `me` among them.
std::string peers_problem(int32_t me, const std::vector<PeerEndpoint>& peers, int32_t slot) {
  constexpr size_t kMaxPeers = 4096;
  if (peers.empty() || peers.size() > kMaxPeers) return "no peers or too many";
  if (slot < 0 || size_t(slot) >= peers.size() || peers[size_t(slot)].node != me)
    return "a slot that is not this node's";
  for (size_t i = 0; i < peers.size(); ++i) {
    if (peers.size() > 1 && (peers[i].port == 0 || !plain_token(peers[i].host, 255)))
      return "a peer with no address";
    for (size_t j = 0; j < i; ++j)
      if (peers[j].node == peers[i].node) return "a peer named twice";
  }
  return {};
}

}  // namespace

std::string spread_problem(const RunConfig& run, int32_t me, const NodeSpread& s) {
  const uint64_t bytes = ParamLayout(run.model).total() * sizeof(float);
  if (s.version < 0) return "a negative weights version";
  if (s.weight_bytes != bytes) return "weights of the wrong size";
  if (s.piece_bytes != spread_piece_bytes(bytes, int(s.peers.size())))
    return "weight pieces of the wrong size";
  return peers_problem(me, s.peers, s.me);
}

PayloadAssembly spread_assembly(const NodeSpread& s) {
  return PayloadAssembly(s.weight_bytes, s.piece_bytes);
}

std::string reduce_problem(int32_t me, const NodeReduce& r) {
  if (r.shards <= 0) return "a reduce of no shards";
  return peers_problem(me, r.peers, r.me);
}

SliceRange reduce_slice(const RunConfig& run, int peers, int me) {
  const Slicing slicing(ParamLayout(run.model).total(), std::max(peers, 1));
  return {slicing.begin(me), slicing.end(me)};
}

PayloadAssembly sum_assembly(size_t values, uint64_t packed_bytes) {
  if (packed_bytes == 0 || packed_bytes > packed_sums_bound(values)) return PayloadAssembly();
  return PayloadAssembly(packed_bytes, kChunkBytes);
}

std::string unpack_partial_sum(size_t values, const std::vector<char>& packed,
                               std::vector<int64_t>& sum) {
  sum.resize(values);
  return unpack_sums(packed.data(), packed.size(), sum.data(), sum.size());
}

std::string result_problem(const RunConfig& run, int32_t shards, bool held,
                           const PayloadAssembly& sum, NodeResult& r) {
  if (!r.error.empty()) {  // an answer too: the node could not compute it
    r.error = printable(r.error, 1000);
    return sum.received() == 0 ? "" : "an error with a partial sum";
  }
  const ExactGrad& g = r.partial.grad;
  if (r.held != held) return held ? "a partial sum it was to keep" : "no partial sum";
  if (held) {
    if (sum.received() != 0 || r.sum_chunks != 0 || r.sum_bytes != 0)
      return "a partial sum it was to keep";
  } else {
    if (sum.bytes() == 0) return "a partial sum with chunks missing (none of a possible size came)";
    if (r.sum_bytes != sum.bytes() || r.sum_chunks < 0 || uint64_t(r.sum_chunks) != sum.pieces())
      return "a partial sum of the wrong size";
    if (!sum.complete()) return "a partial sum with chunks missing";
  }
  if (!g.sum.empty()) return "a partial sum outside its chunks";
  if (g.max_abs.size() != ParamLayout(run.model).tensors().size())
    return "maxima of the wrong size";
  for (float m : g.max_abs)
    if (!std::isfinite(m) || m < 0) return "maxima that are not magnitudes";
  if (g.shards != shards) return fmt::format("{} shards summed of {}", g.shards, shards);
  if (g.tokens != int64_t(shards) * run.batch.micro_batch * run.batch.context)
    return "a token count that is not the shards'";
  if (!finite_non_negative(r.node_ms)) return "a node time that is not a duration";
  if (!finite_non_negative(r.cpu_s) || !finite_non_negative(r.rss_mb))
    return "a CPU time or memory size out of range";
  if (std::string t = timing_problem(r.partial.timing); !t.empty()) return t;
  return faults_problem(r.partial.faults);
}

}  // namespace cllm
