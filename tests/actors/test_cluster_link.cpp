// The cluster's actors in one process: a peer that passes the handshake and then answers a step
// with malformed pieces gets an error for that step (the coordinator deals its shards again),
// never a sum with holes, a crash or a hang; a well-formed answer goes through, with the node's
// CPU time and memory. Refusals are "node" errors, both ways: the gateway's of a peer, and a
// node's of a root that publishes no gateway.
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <caf/io/all.hpp>

#include "actors/cluster_root.hpp"
#include "actors/node_agent.hpp"
#include "messages/cluster.hpp"
#include "src/cluster_auth.hpp"
#include "src/sum_pack.hpp"
#include "test_util.hpp"

using namespace cllm;

namespace {

struct Config : caf::actor_system_config {
  Config() { register_messages(*this); }
};

const NumericsFingerprint kPrint{"probe", "build", "model", "tokenizer"};
constexpr auto kWait = std::chrono::seconds(30);

// Joins `gateway` as `node` (hello, proof, ready); returns the link that stands for it.
link_actor join(caf::scoped_actor& node, const gateway_actor& gateway, const std::string& key) {
  JoinHello h;
  h.node_id = "n1", h.host = "127.0.0.1", h.nonce = std::string(32, '7');
  h.spheres = 1, h.threads = 1;
  std::string root_nonce;
  node->request(gateway, kWait, hello_atom::value, h)
      .receive([&](std::string& n) { root_nonce = n; },
               [&](caf::error& e) { FAIL("hello: " << node->system().render(e)); });
  const std::string proof = node_join_proof(key, root_nonce, h.nonce, h.node_id);
  node->request(gateway, kWait, proof_atom::value, proof)
      .receive([](JoinWelcome&) {},
               [&](caf::error& e) { FAIL("proof: " << node->system().render(e)); });
  link_actor link;
  const Fingerprint fp{kPrint.probe_sha256, kPrint.build_id, kPrint.model, kPrint.tokenizer};
  node->request(gateway, kWait, ready_atom::value, fp)
      .receive([&](JoinAccepted& a) { link = a.link; },
               [&](caf::error& e) { FAIL("ready: " << node->system().render(e)); });
  return link;
}

// A gateway of the spheres run, whose coordinator is a scoped actor (it only receives what the
// gateway tells it), and a scoped actor to play the node.
struct GatewayFixture {
  Config cfg;
  caf::actor_system sys{cfg};
  const std::vector<int32_t> tokens = test::toy_corpus(4000, test::kSpheresSentence);
  const RunConfig run = test::spheres_run();
  WindowSampler sampler{tokens, run.batch.context, sampler_seed(run.seed)};
  caf::scoped_actor coordinator{sys}, node{sys};
  const std::shared_ptr<ClusterSetup> setup = make_setup();
  const gateway_actor gateway = spawn_gateway(sys, setup);

  std::shared_ptr<ClusterSetup> make_setup() {
    auto s = std::make_shared<ClusterSetup>();
    s->run = run, s->key = "key", s->fingerprint = kPrint, s->sampler = &sampler;
    s->coordinator = caf::actor_cast<coordinator_actor>(coordinator);
    return s;
  }
};

// The request and its weight chunks, as the node receives them.
NodeWork take_work(caf::scoped_actor& node) {
  NodeWork w;
  node->receive([&](work_atom, NodeWork& x) { w = std::move(x); },
                caf::after(kWait) >> [] { FAIL("no request came"); });
  for (int32_t i = 0; i < w.weight_chunks; ++i)
    node->receive([](chunk_atom, Chunk&) {}, caf::after(kWait) >> [] { FAIL("no chunk came"); });
  return w;
}

}  // namespace

TEST_CASE_METHOD(GatewayFixture,
                 "a link refuses a node's malformed answers and takes a well-formed one",
                 "[cluster]") {
  caf::scoped_actor parent{sys};
  const link_actor link = join(node, gateway, setup->key);
  REQUIRE(link);

  const ParamLayout layout(run.model);
  TrainState state(run);
  auto assignment = std::make_shared<Assignment>();
  assignment->set.shards = {0, 1};
  // A sum with values of all sizes (packed on the wire, it must come back bit for bit).
  std::vector<int64_t> sum(layout.total(), 0);
  for (size_t i = 0; i < sum.size(); ++i)
    sum[i] = int64_t((i * 0x9E3779B97F4A7C15ull) >> (i % 61)) * (i % 3 ? 1 : -1);
  std::vector<char> packed;
  pack_sums(sum.data(), sum.size(), packed);
  // One step through the link; `answer` plays the node. Returns the step's error ("" if none).
  const auto step = [&](auto answer) {
    auto rh = parent->request(link, kWait, step_atom::value, state.next_work(), state.weights(),
                              AssignmentRef(assignment), StepCtl{});
    const NodeWork w = take_work(node);
    NodeResult r;
    r.request = w.request;
    r.partial.grad.max_abs.assign(layout.tensors().size(), 0.0f);
    r.partial.grad.shards = 2;
    r.partial.grad.tokens = 2 * int64_t(run.batch.micro_batch) * run.batch.context;
    // The chunks as a receiver holds them (in one process nothing is serialised).
    auto chunks = Chunk::split(w.request, nullptr, packed.data(), packed.size());
    for (Chunk& c : chunks) c.bytes.assign(c.data, c.data + c.size), c.data = nullptr, c.size = 0;
    r.sum_chunks = int32_t(chunks.size());
    r.sum_bytes = packed.size();
    r.cpu_s = 1.25, r.rss_mb = 40.5;  // the node process's figures
    answer(r, chunks);
    for (auto& c : chunks) node->send(link, chunk_atom::value, std::move(c));
    node->send(link, result_atom::value, std::move(r));
    std::string error = "no answer";
    rh.receive(
        [&](Partial& p) {
          error = p.grad.sum == sum ? "" : "another sum";
          // The link names its node (the first to join: index 1) with the figures it sent.
          const auto& n = p.timing.nodes;
          if (n.size() != 1 || n[0].node != 1 || n[0].cpu_s != 1.25 || n[0].rss_mb != 40.5)
            error = "without the node's CPU time and memory";
        },
        [&](caf::error& e) { error = exit_reason_text(sys, e); });
    return error;
  };

  CHECK(step([](NodeResult&, std::vector<Chunk>&) {}) == "");
  // A repeated piece counts once (the sum stays whole); a piece of another payload size, one cut
  // short, one missing: the sum has a hole, the answer is refused.
  CHECK(step([](NodeResult&, std::vector<Chunk>& c) { c.push_back(c.front()); }) == "");
  CHECK_THAT(step([](NodeResult&, std::vector<Chunk>& c) { c.front().total += 8; }),
             Catch::Contains("malformed answer") && Catch::Contains("wrong size"));
  // A packed size beyond what the model's sum can take is refused before anything is kept.
  CHECK_THAT(step([&](NodeResult& r, std::vector<Chunk>& c) {
               r.sum_bytes = c.front().total = packed_sums_bound(sum.size()) + 1;
             }),
             Catch::Contains("malformed answer") && Catch::Contains("none of a possible size"));
  // Whole, but not a packing of the model's sum: a width out of range, bytes left over.
  CHECK_THAT(step([](NodeResult&, std::vector<Chunk>& c) { c.front().bytes[1] = char(65); }),
             Catch::Contains("malformed answer") && Catch::Contains("out of range"));
  CHECK_THAT(step([](NodeResult& r, std::vector<Chunk>& c) {
               c.front().bytes.push_back(0);
               ++c.front().total, ++r.sum_bytes;
             }),
             Catch::Contains("malformed answer") && Catch::Contains("left over"));
  CHECK_THAT(step([](NodeResult&, std::vector<Chunk>& c) { c.front().bytes.pop_back(); }),
             Catch::Contains("chunks missing"));
  CHECK_THAT(step([](NodeResult&, std::vector<Chunk>& c) { c.pop_back(); }),
             Catch::Contains("chunks missing"));
  CHECK_THAT(step([](NodeResult& r, std::vector<Chunk>&) { r.partial.grad.shards = 3; }),
             Catch::Contains("3 shards summed of 2"));
  CHECK_THAT(step([](NodeResult& r, std::vector<Chunk>&) { r.partial.grad.max_abs.pop_back(); }),
             Catch::Contains("maxima of the wrong size"));
  CHECK_THAT(step([](NodeResult& r, std::vector<Chunk>&) { r.node_ms = -1; }),
             Catch::Contains("not a duration"));
  CHECK_THAT(step([](NodeResult& r, std::vector<Chunk>&) { r.cpu_s = -1; }),
             Catch::Contains("CPU time or memory size out of range"));
  CHECK_THAT(step([](NodeResult& r, std::vector<Chunk>&) { r.rss_mb = std::nan(""); }),
             Catch::Contains("CPU time or memory size out of range"));
  // A node cannot speak for others: only its link adds figures of nodes.
  CHECK_THAT(step([](NodeResult& r, std::vector<Chunk>&) {
               r.partial.timing.nodes.push_back(NodeUsage{7, 1, 1});
             }),
             Catch::Contains("figures of other nodes"));
  CHECK_THAT(step([](NodeResult& r, std::vector<Chunk>& c) {
               r.error = "node n1: out of\nmemory";
               c.clear();
             }),
             Catch::Equals("node n1: out of\\nmemory"));
  // The link still serves its node after all that.
  CHECK(step([](NodeResult&, std::vector<Chunk>&) {}) == "");
  caf::anon_send_exit(link, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(gateway, caf::exit_reason::user_shutdown);
}

TEST_CASE_METHOD(GatewayFixture, "the gateway refuses a peer with a node error that names why",
                 "[cluster]") {
  JoinHello h;
  h.node_id = "n1", h.host = "127.0.0.1", h.nonce = std::string(32, '7');
  h.spheres = 1, h.threads = 1;
  node->request(gateway, kWait, hello_atom::value, h)
      .receive([](std::string&) {},
               [&](caf::error& e) { FAIL("hello: " << node->system().render(e)); });
  caf::error refusal;
  node->request(gateway, kWait, proof_atom::value, std::string(64, '0'))
      .receive([](JoinWelcome&) { FAIL("a wrong proof was accepted"); },
               [&](caf::error& e) { refusal = std::move(e); });
  CHECK(as_node_exit(refusal) == node_exit::refused);
  CHECK(exit_reason_text(sys, refusal) == "wrong cluster key");
  CHECK(sys.render(refusal) == "node refused: wrong cluster key");
  // A sphere's error is no node's.
  CHECK(!as_node_exit(make_sphere_error(sphere_errc::crashed, caf::make_message(std::string()))));
  caf::anon_send_exit(gateway, caf::exit_reason::user_shutdown);
}

TEST_CASE("a node refuses a root whose published actor is no gateway", "[cluster]") {
  struct NetConfig : caf::actor_system_config {
    NetConfig() {
      register_messages(*this);
      load<caf::io::middleman>();
    }
  } cfg;
  caf::actor_system sys{cfg};
  // An untyped actor published where a gateway should be: its interface is not gateway_actor's.
  // (With an argument: CAF 0.17 binds a function without arguments through a null pointer.)
  auto impostor =
      sys.spawn([](int) -> caf::behavior { return {[](hello_atom, JoinHello&) {}}; }, 0);
  auto port = sys.middleman().publish(impostor, 0, "127.0.0.1");
  REQUIRE(port);
  NodeOptions opt;
  opt.port = *port;
  opt.node_id = "n1", opt.node_host = "127.0.0.1";
  opt.reconnect_timeout_s = 30;
  caf::error reason;
  {
    caf::scoped_actor self{sys};
    auto agent = spawn_node_agent(sys, opt);
    self->monitor(agent);
    self->receive([&](caf::down_msg& dm) { reason = dm.reason; },
                  caf::after(kWait) >> [] { FAIL("the node did not end"); });
  }
  CHECK(as_node_exit(reason) == node_exit::refused);
  CHECK_THAT(exit_reason_text(sys, reason), Catch::Contains("no gateway"));
  caf::anon_send_exit(impostor, caf::exit_reason::user_shutdown);
}
