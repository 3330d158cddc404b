// The cluster's network messages (messages/cluster.hpp) as a peer could send them: any bytes,
// decoded with CAF's binary deserializer as the receiving side decodes them, then checked with the
// receiving actor's own checks (messages/cluster_checks.hpp) and, when they pass, used as that
// actor uses them: weights and partial sums reassembled from chunks, a node's shards computed, a
// root's step applied. Properties:
//   - decoding ends, with an error or a value, and never reads or allocates past the input;
//   - what decodes encodes again to bytes that decode to the same bytes (inspect is symmetric);
//   - a refusal is one printable line;
//   - what passes the checks can be used: a computed shard, an applied step, never a throw.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "cluster_run.hpp"
#include "fuzz_util.hpp"
#include "messages/cluster.hpp"
#include "messages/cluster_checks.hpp"
#include "messages/messages.hpp"

using namespace cllm;

namespace {

const RunConfig& run() {
  static const RunConfig r = fuzz::cluster_run();
  return r;
}

// The values of the model's whole sum.
size_t whole() {
  return ParamLayout(run().model).total();
}

// The actor system behind decoding a whole message (its registry names every type).
caf::actor_system& actor_system() {
  struct Config : caf::actor_system_config {
    Config() {
      register_messages(*this);
      set("scheduler.max-threads", 1);
    }
  };
  // Never destroyed: its threads would end after libFuzzer's exit has begun.
  static Config* cfg = new Config;
  static caf::actor_system* sys = new caf::actor_system(*cfg);
  return *sys;
}

// CAF 0.17 encodes a float or double by halving it until it is below 2 (detail::pack754): an
// infinity never gets there, and the encoding loops forever. Bytes from a peer can decode to an
// infinity (an exponent field of all ones), so a received value must never be sent on unless
// finite: the root refuses answers with one (result_problem) and sends nothing of them on.
bool finite_all(const NodeResult& r) {
  const StepTiming& t = r.partial.timing;
  for (double d : {r.node_ms, r.cpu_s, r.rss_mb, t.compute_ms, t.fold_ms, t.reduce_ms, t.wait_ms,
                   t.network_ms})
    if (!std::isfinite(d)) return false;
  for (const NodeUsage& u : t.nodes)
    if (!std::isfinite(u.cpu_s) || !std::isfinite(u.rss_mb)) return false;
  for (float f : r.partial.grad.max_abs)
    if (!std::isfinite(f)) return false;
  return true;
}
template <class T>
bool finite_all(const T&) {
  return true;  // no floating-point fields
}

// Bytes being decoded, one message after another.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size)
      : src_(nullptr, reinterpret_cast<const char*>(data), size) {}
  size_t remaining() const { return src_.remaining(); }
  bool byte(uint8_t& b) {
    if (src_.remaining() == 0) return false;
    return !src_(b);
  }
  // Decodes one T; on success, checks that it encodes and decodes again to the same bytes.
  template <class T>
  bool read(T& x) {
    if (src_(x)) return false;
    if (!finite_all(x)) return true;  // (see finite_all)
    std::vector<char> once, twice;
    caf::binary_serializer s1(nullptr, once);
    if (s1(x)) fuzz::fail("a decoded message does not encode");
    T y;
    caf::binary_deserializer d(nullptr, once);
    if (d(y) || d.remaining() != 0) fuzz::fail("an encoded message does not decode");
    caf::binary_serializer s2(nullptr, twice);
    if (s2(y) || once != twice) fuzz::fail("a message changed in an encode/decode round trip");
    return true;
  }

 private:
  caf::binary_deserializer src_;
};

// CLLM_FUZZ_TRACE=1: what became of each input (to see how far the seeds reach).
void trace(const std::string& what) {
  static const bool on = std::getenv("CLLM_FUZZ_TRACE") != nullptr;
  if (on) std::fprintf(stderr, "fuzz_cluster: %s\n", cllm::printable(what).c_str());
}

void check_refusal(const std::string& why) {
  if (why.empty()) return;
  trace("refused: " + why);
  fuzz::check_message(why.c_str());
}

void on_hello(Reader& in) {
  JoinHello h;
  if (!in.read(h)) return;
  const std::string bad = hello_problem(h);
  check_refusal(bad);
  fuzz::check_message(hello_who(h).c_str());
}

void on_fingerprint(Reader& in) {
  Fingerprint fp;
  if (!in.read(fp)) return;
  static const NumericsFingerprint mine{"ab12", "cllm test build", "d 4", "bytes 00"};
  for (const std::string& d : fingerprint_differences(mine, fingerprint_from_wire(fp)))
    fuzz::check_message(d.c_str());
}

void on_welcome(Reader& in) {
  JoinWelcome w;
  if (!in.read(w)) return;
  RunConfig r;
  check_refusal(welcome_problem(w, r));
}

// A node: requests and weight chunks, as node_agent.cpp takes them; a request whose weights are
// all there is computed.
struct Node {
  int64_t held_version = -1;
  AlignedVector<float> weights;
  bool has_work = false;
  NodeWork work;
  int64_t incoming_version = -1;
  PayloadAssembly pieces;
  AlignedVector<float> incoming;

  void on_work(NodeWork& w) {
    has_work = false;
    if (const auto bad = work_problem(run(), held_version, -1, w); !bad.empty())
      return check_refusal(bad);
    work = std::move(w);
    has_work = true;
    if (work.weights_version != held_version) {
      incoming_version = work.weights_version;
      pieces = weights_assembly(work);
      incoming.assign(work.weight_bytes / sizeof(float), 0.0f);
    }
    compute();
  }
  void on_chunk(const Chunk& c) {
    if (incoming.empty() || int64_t(c.id) != incoming_version) return;
    const int64_t at = pieces.place(c.total, c.index, c.bytes.size());
    if (at < 0) return;
    std::memcpy(reinterpret_cast<char*>(incoming.data()) + at, c.bytes.data(), c.bytes.size());
    if (!pieces.complete()) return;
    weights = std::move(incoming);
    held_version = incoming_version;
    incoming.clear();
    compute();
  }
  void compute() {
    if (!has_work || held_version != work.weights_version) return;
    has_work = false;
    static ShardWorker worker(run());
    ExactGrad acc;
    try {
      for (size_t i = 0; i < work.set.shards.size(); ++i)
        worker.compute(weights.data(), work.work, work.set.shards[i], acc,
                       work.set.tokens_of(i, shard_tokens(run())));
    } catch (const std::exception& e) {
      fuzz::fail(std::string("a request that passed the checks failed: ") + e.what());
    }
    trace("computed " + std::to_string(work.set.shards.size()) + " shards");
  }
};

void node_session(Reader& in) {
  Node node;
  uint8_t tag = 0;
  for (int n = 0; n < 16 && in.byte(tag); ++n) {
    if (tag % 2 == 0) {
      NodeWork w;
      if (!in.read(w)) return;
      node.on_work(w);
    } else {
      Chunk c;
      if (!in.read(c)) return;
      node.on_chunk(c);
    }
  }
}

// The root's step with a node's answer for `shards` of its shards (the root's own spheres
// computed the rest: zeros here).
void apply_answer(int32_t shards, Partial& answer) {
  const ParamLayout layout(run().model);
  const int32_t all = run().batch.shards();
  Partial total;
  if (shards < all) {
    Partial own;
    own.grad.reset(layout);
    std::fill(own.grad.sum.begin(), own.grad.sum.end(), 0);
    own.grad.shards = all - shards;
    own.grad.tokens = int64_t(all - shards) * run().batch.micro_batch * run().batch.context;
    total.merge(own);
  }
  try {
    total.merge(answer);
    TrainState state(run());
    const StepOutcome out = state.apply(total.grad, state.next_work());
    trace("applied a step, outcome " + std::to_string(int(out.kind)));
  } catch (const std::exception& e) {
    fuzz::fail(std::string("an answer that passed the checks failed: ") + e.what());
  }
}

// A link: the chunks of a node's sum, then its result, as cluster_root.cpp takes them.
void root_session(Reader& in) {
  uint8_t b = 0;
  if (!in.byte(b)) return;
  const int32_t shards = 1 + b % run().batch.shards();
  PayloadAssembly pieces;
  bool sized = false;
  std::vector<char> packed;
  uint8_t tag = 0;
  for (int n = 0; n < 16 && in.byte(tag); ++n) {
    if (tag % 2 == 0) {
      Chunk c;
      if (!in.read(c)) return;
      if (!sized) pieces = sum_assembly(whole(), c.total), sized = true;
      const int64_t at = pieces.place(c.total, c.index, c.bytes.size());
      if (at < 0) continue;
      if (packed.empty()) packed.resize(pieces.bytes());
      std::memcpy(packed.data() + at, c.bytes.data(), c.bytes.size());
      continue;
    }
    NodeResult r;
    if (!in.read(r)) return;
    if (const auto bad = result_problem(run(), shards, false, pieces, r); !bad.empty())
      return check_refusal(bad);
    if (!r.error.empty()) {
      trace("an error: " + r.error);
      return fuzz::check_message(r.error.c_str());
    }
    if (const auto bad = unpack_partial_sum(whole(), packed, r.partial.grad.sum); !bad.empty())
      return check_refusal(bad);
    return apply_answer(shards, r.partial);
  }
}

// Whether a whole message holds only the types of the cluster's messages: ours (cllm.*) and the
// few of CAF's they use. CAF's others are left out: CAF 0.17 decodes a byte buffer (@charbuf, or
// one nested in a message or an error) by allocating the size its length prefix claims, up to
// 4 GiB, before it reads a byte (a known exposure of CAF's, docs/robustness.md).
bool cluster_types(const uint8_t* data, size_t size) {
  caf::binary_deserializer src(nullptr, reinterpret_cast<const char*>(data), size);
  uint16_t nr = 0;
  std::string names;
  if (src.begin_object(nr, names) || nr != 0) return false;
  size_t at = 0;
  while (at <= names.size()) {
    const size_t end = std::min(names.find('+', at), names.size());
    const std::string name = names.substr(at, end - at);
    static const std::set<std::string> caf_types = {"@<>",  "@atom", "@str", "@i32",
                                                    "@i64", "@u64",  "@bool"};
    if (name.rfind("cllm.", 0) != 0 && caf_types.count(name) == 0) return false;
    at = end + 1;
  }
  return true;
}

// A whole message, decoded by type name through the registry (what BASP does with a payload),
// then checked as the actor it is for checks it.
void any_message(const uint8_t* data, size_t size) {
  if (!cluster_types(data, size)) return;
  caf::message m;
  caf::binary_deserializer src(actor_system(), reinterpret_cast<const char*>(data), size);
  if (src(m)) return;
  trace("a message of " + std::to_string(m.size()) + " elements");
  if (m.match_elements<hello_atom, JoinHello>()) {
    check_refusal(hello_problem(m.get_as<JoinHello>(1)));
  } else if (m.match_elements<ready_atom, Fingerprint>()) {
    fingerprint_from_wire(m.get_as<Fingerprint>(1));
  } else if (m.match_elements<work_atom, NodeWork>()) {
    check_refusal(work_problem(run(), -1, -1, m.get_as<NodeWork>(1)));
  } else if (m.match_elements<result_atom, NodeResult>()) {
    NodeResult r = m.get_as<NodeResult>(1);
    check_refusal(result_problem(run(), 1, r.held, sum_assembly(whole(), r.sum_bytes), r));
  } else if (m.match_elements<spread_atom, NodeSpread>()) {
    const NodeSpread& sp = m.get_as<NodeSpread>(1);
    const std::string bad = spread_problem(run(), 1, sp);
    check_refusal(bad);
    if (bad.empty()) spread_assembly(sp).missing();
  } else if (m.match_elements<reduce_atom, NodeReduce>()) {
    check_refusal(reduce_problem(1, m.get_as<NodeReduce>(1)));
  } else if (m.match_elements<JoinWelcome>()) {
    RunConfig r;
    check_refusal(welcome_problem(m.get_as<JoinWelcome>(0), r));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0] % fuzz::kModes;
  Reader in(data + 1, size - 1);
  switch (mode) {
    case fuzz::kHello:
      on_hello(in);
      break;
    case fuzz::kFingerprint:
      on_fingerprint(in);
      break;
    case fuzz::kWelcome:
      on_welcome(in);
      break;
    case fuzz::kNodeSession:
      node_session(in);
      break;
    case fuzz::kRootSession:
      root_session(in);
      break;
    default:
      any_message(data + 1, size - 1);
      break;
  }
  return 0;
}
