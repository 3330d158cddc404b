#include "messages/messages.hpp"

#include <algorithm>
#include <cstring>

#include "messages/cluster.hpp"

namespace cllm {

namespace {
const caf::atom_value kSphereCategory = caf::atom("sphere");
const caf::atom_value kNodeCategory = caf::atom("node");
}  // namespace

caf::error make_node_error(node_exit code, std::string line) {
  return caf::error(static_cast<uint8_t>(code), kNodeCategory, caf::make_message(std::move(line)));
}

std::optional<node_exit> as_node_exit(const caf::error& e) {
  if (e.category() != kNodeCategory) return std::nullopt;
  return node_exit(e.code());
}

caf::error make_sphere_error(sphere_errc code, caf::message context) {
  return caf::error(static_cast<uint8_t>(code), kSphereCategory, std::move(context));
}

caf::error crash_error(const std::exception_ptr& ep) {
  std::string what = "unknown exception";
  try {
    std::rethrow_exception(ep);
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  return make_sphere_error(sphere_errc::crashed, caf::make_message(what));
}

ShardSet ShardSet::subset(const std::vector<size_t>& positions, size_t per_shard) const {
  ShardSet out;
  for (size_t p : positions) {
    out.shards.push_back(shards[p]);
    if (!tokens.empty())
      out.tokens.insert(out.tokens.end(), tokens.begin() + std::ptrdiff_t(p * per_shard),
                        tokens.begin() + std::ptrdiff_t((p + 1) * per_shard));
  }
  return out;
}

std::vector<Chunk> Chunk::split(uint64_t id, std::shared_ptr<const void> owner, const void* data,
                                uint64_t bytes) {
  std::vector<Chunk> out;
  const char* p = static_cast<const char*>(data);
  for (uint64_t off = 0; off < bytes; off += kChunkBytes) {
    Chunk c;
    c.id = id, c.index = int32_t(off / kChunkBytes), c.total = bytes;
    c.payload = owner;
    c.data = p + off;
    c.size = std::min<uint64_t>(kChunkBytes, bytes - off);
    out.push_back(std::move(c));
  }
  return out;
}

uint64_t spread_piece_bytes(uint64_t bytes, int peers) {
  // About a share per node (so each node's share is about bytes / peers), in whole floats.
  const uint64_t share = (bytes + uint64_t(std::max(peers, 1)) - 1) / uint64_t(std::max(peers, 1));
  const uint64_t floats = std::max<uint64_t>(1, (share + sizeof(float) - 1) / sizeof(float));
  return std::min<uint64_t>(kChunkBytes, floats * sizeof(float));
}

int32_t spread_first(int32_t pieces, int peers, int k) {
  return int32_t(int64_t(pieces) * k / std::max(peers, 1));
}

const GiveUp* as_give_up(const caf::error& e) {
  if (e.category() != kSphereCategory || e.code() != uint8_t(sphere_errc::gave_up) ||
      !e.context().match_elements<GiveUp>())
    return nullptr;
  return &e.context().get_as<GiveUp>(0);
}

std::string exit_reason_text(caf::actor_system& sys, const caf::error& reason) {
  if (const GiveUp* g = as_give_up(reason)) return g->cause;
  if ((reason.category() == kSphereCategory || reason.category() == kNodeCategory) &&
      reason.context().match_elements<std::string>())
    return reason.context().get_as<std::string>(0);
  return sys.render(reason);
}

void register_messages(caf::actor_system_config& cfg) {
  cfg.add_message_type<StepWork>("cllm.step_work");
  cfg.add_message_type<StepCtl>("cllm.step_ctl");
  cfg.add_message_type<ExactGrad>("cllm.exact_grad");
  cfg.add_message_type<StepTiming>("cllm.step_timing");
  cfg.add_message_type<NodeUsage>("cllm.node_usage");
  cfg.add_message_type<FaultEvent>("cllm.fault_event");
  cfg.add_message_type<FaultCounts>("cllm.fault_counts");
  cfg.add_message_type<Partial>("cllm.partial");
  cfg.add_message_type<ShardSet>("cllm.shard_set");
  cfg.add_message_type<GiveUp>("cllm.give_up");
  cfg.add_message_type<SphereStats>("cllm.sphere_stats");
  cfg.add_message_type<JoinedNode>("cllm.joined_node");
  cfg.add_message_type<Membership>("cllm.membership");
  cfg.add_message_type<JoinHello>("cllm.join_hello");
  cfg.add_message_type<Fingerprint>("cllm.fingerprint");
  cfg.add_message_type<JoinWelcome>("cllm.join_welcome");
  cfg.add_message_type<JoinAccepted>("cllm.join_accepted");
  cfg.add_message_type<NodeWork>("cllm.node_work");
  cfg.add_message_type<Chunk>("cllm.chunk");
  cfg.add_message_type<NodeResult>("cllm.node_result");
  cfg.add_message_type<PeerEndpoint>("cllm.peer_endpoint");
  cfg.add_message_type<NodeNeed>("cllm.node_need");
  cfg.add_message_type<NodeSpread>("cllm.node_spread");
  cfg.add_message_type<NodeReduce>("cllm.node_reduce");
  cfg.add_error_category(kSphereCategory, [](uint8_t code, caf::atom_value,
                                             const caf::message& ctx) {
    std::string text = code == uint8_t(sphere_errc::gave_up) ? "sphere gave up" : "sphere crashed";
    if (ctx.match_elements<std::string>())
      text += ": " + ctx.get_as<std::string>(0);
    else if (ctx.match_elements<GiveUp>())
      text += ": " + ctx.get_as<GiveUp>(0).cause;
    return text;
  });
  cfg.add_error_category(kNodeCategory, [](uint8_t code, caf::atom_value, const caf::message& ctx) {
    const char* what = code == uint8_t(node_exit::done)      ? "node done"
                       : code == uint8_t(node_exit::left)    ? "node left"
                       : code == uint8_t(node_exit::refused) ? "node refused"
                                                             : "node found no root";
    std::string text = what;
    if (ctx.match_elements<std::string>()) text += ": " + ctx.get_as<std::string>(0);
    return text;
  });
}

}  // namespace cllm
