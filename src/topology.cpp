#include "src/topology.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "src/config.hpp"

namespace cllm {

Topology::Topology(int spheres, int fanout) : fanout_(fanout) {
  if (spheres < 1) throw ConfigError(fmt::format("spheres must be >= 1 (got {})", spheres));
  if (spheres > 1'000'000)
    throw ConfigError(fmt::format("spheres {} is more than 1,000,000", spheres));
  if (fanout < 1) throw ConfigError(fmt::format("fan-out must be >= 1 (got {})", fanout));
  positions_.resize(size_t(spheres));
  for (int i = 0; i < spheres; ++i) {
    auto& p = positions_[size_t(i)];
    p.id = i;
    p.group = i % kSymmetryGroups;
    if (i > 0) {
      p.parent = (i - 1) / fanout;
      p.level = positions_[size_t(p.parent)].level + 1;
      positions_[size_t(p.parent)].children.push_back(i);
    }
    levels_ = std::max(levels_, p.level + 1);
  }
  height_.assign(size_t(spheres), 0);
  for (int i = spheres - 1; i > 0; --i) {  // children have larger ids than their parent
    int& h = height_[size_t(positions_[size_t(i)].parent)];
    h = std::max(h, height_[size_t(i)] + 1);
  }
}

std::vector<int> Topology::level_sizes() const {
  std::vector<int> t(size_t(levels_), 0);
  for (const auto& p : positions_) ++t[size_t(p.level)];
  return t;
}

std::string Topology::describe() const {
  std::string out = fmt::format("{} spheres, fan-out {}, {} levels:", size(), fanout_, levels_);
  const auto sizes = level_sizes();
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (sizes.size() > 8 && i == 6) {  // a chain has a million levels of 1
      out += fmt::format(" ... ({} more) {}", sizes.size() - 7, sizes.back());
      break;
    }
    out += fmt::format(" {}", sizes[i]);
  }
  return out;
}

Placement parse_placement(const std::string& text) {
  if (text == "bfs") return Placement::bfs;
  if (text == "leaves") return Placement::leaves;
  throw ConfigError(fmt::format("placement must be bfs or leaves, got '{}'", text));
}

const char* placement_name(Placement p) {
  return p == Placement::bfs ? "bfs" : "leaves";
}

namespace {

// The spheres that take shards, in the order shards are dealt to them.
std::vector<int> placement_order(const Topology& topo, Placement placement) {
  std::vector<int> order;
  if (placement == Placement::bfs) {
    order.resize(size_t(topo.size()));
    for (int i = 0; i < topo.size(); ++i) order[size_t(i)] = i;
    return order;
  }
  // Leaves, dealt round-robin over sphere 0's subtrees, and within each subtree over its
  // children's subtrees: each sphere's list interleaves its children's lists (bottom-up, since
  // children have larger ids than their parent).
  std::vector<std::vector<int>> deal(size_t(topo.size()));
  for (int id = topo.size() - 1; id >= 0; --id) {
    const auto& children = topo.position(id).children;
    std::vector<int>& mine = deal[size_t(id)];
    if (children.empty()) {
      mine.push_back(id);
      continue;
    }
    if (children.size() == 1) {
      mine = std::move(deal[size_t(children[0])]);
      continue;
    }
    size_t longest = 0, total = 0;
    for (int c : children) {
      longest = std::max(longest, deal[size_t(c)].size());
      total += deal[size_t(c)].size();
    }
    mine.reserve(total);
    for (size_t k = 0; k < longest; ++k)
      for (int c : children)
        if (k < deal[size_t(c)].size()) mine.push_back(deal[size_t(c)][k]);
    for (int c : children) std::vector<int>().swap(deal[size_t(c)]);
  }
  order = std::move(deal[0]);
  return order;
}

}  // namespace

ShardPlan::ShardPlan(const Topology& topo, int shards, Placement placement)
    : shards_(shards), placement_(placement) {
  if (shards < 0) throw ConfigError(fmt::format("shards must be >= 0 (got {})", shards));
  const std::vector<int> order = placement_order(topo, placement);
  const size_t n = size_t(topo.size());
  owner_.resize(size_t(shards));
  std::vector<int> count(n, 0);
  for (int s = 0; s < shards; ++s) {
    owner_[size_t(s)] = order[size_t(s) % order.size()];
    ++count[size_t(owner_[size_t(s)])];
  }
  own_begin_.assign(n + 1, 0);
  for (size_t i = 0; i < n; ++i) {
    own_begin_[i + 1] = own_begin_[i] + count[i];
    computing_ += count[i] > 0;
  }
  own_list_.resize(size_t(shards));
  std::vector<int> fill(own_begin_.begin(), own_begin_.end() - 1);
  for (int s = 0; s < shards; ++s) own_list_[size_t(fill[size_t(owner_[size_t(s)])]++)] = s;
  subtree_ = count;
  for (int i = int(n) - 1; i > 0; --i)  // children have larger ids than their parent
    subtree_[size_t(topo.position(i).parent)] += subtree_[size_t(i)];
}

std::vector<int> ShardPlan::own(int id) const {
  return std::vector<int>(own_list_.begin() + own_begin_[size_t(id)],
                          own_list_.begin() + own_begin_[size_t(id) + 1]);
}

std::string ShardPlan::render(const Topology& topo, int max_lines) const {
  std::string out = fmt::format("{}; {} shards per step, placement {}, {} computing spheres\n",
                                topo.describe(), shards_, placement_name(placement_), computing_);
  int lines = 0;
  std::vector<int> stack{0};  // depth-first listing, indented by level
  while (!stack.empty()) {
    const int id = stack.back();
    stack.pop_back();
    if (lines++ >= max_lines) {
      out += fmt::format("... ({} more spheres)\n", topo.size() - max_lines);
      break;
    }
    const auto& n = topo.position(id);
    out += fmt::format("{:{}}sphere {} (level {}, group {}, {} children, shards", "",
                       2 * std::min(n.level, 40), id, n.level, n.group, n.children.size());
    const auto mine = own(id);
    if (mine.empty()) out += " none";
    for (int s : mine) out += fmt::format(" {}", s);
    out += ")\n";
    for (auto it = n.children.rbegin(); it != n.children.rend(); ++it) stack.push_back(*it);
  }
  return out;
}

std::vector<double> deal_weights(const std::vector<int>& capacity,
                                 const std::vector<double>& pace) {
  std::vector<double> w(capacity.size(), 0.0);
  bool measured = pace.size() == capacity.size();
  for (size_t m = 0; measured && m < capacity.size(); ++m)
    if (capacity[m] > 0 && !(pace[m] > 0)) measured = false;
  for (size_t m = 0; m < capacity.size(); ++m)
    if (capacity[m] > 0) w[m] = measured ? pace[m] : double(capacity[m]);
  return w;
}

std::vector<std::vector<size_t>> deal_shards(const std::vector<size_t>& positions,
                                             const std::vector<double>& weight) {
  std::vector<std::vector<size_t>> out(weight.size());
  const auto load = [&](size_t m) { return double(out[m].size() + 1) / weight[m]; };
  // One each first, where there are enough: a member measured slow keeps being measured (a
  // member dealt nothing would never show that it got faster).
  size_t next = 0;
  const auto takers =
      size_t(std::count_if(weight.begin(), weight.end(), [](double w) { return w > 0; }));
  if (positions.size() >= takers)
    for (size_t m = 0; m < weight.size(); ++m)
      if (weight[m] > 0) out[m].push_back(positions[next++]);
  for (size_t i = next; i < positions.size(); ++i) {
    size_t best = weight.size();
    for (size_t m = 0; m < weight.size(); ++m)
      if (weight[m] > 0 && (best == weight.size() || load(m) < load(best))) best = m;
    if (best == weight.size()) throw ConfigError("no member can take shards");
    out[best].push_back(positions[i]);
  }
  return out;
}

}  // namespace cllm
