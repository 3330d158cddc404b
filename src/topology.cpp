#include "src/topology.hpp"

#include <fmt/format.h>

#include "src/config.hpp"

namespace cllm {

Topology::Topology(int spheres, int fanout) : fanout_(fanout) {
  if (spheres < 1) throw ConfigError(fmt::format("spheres must be >= 1 (got {})", spheres));
  if (spheres > 1'000'000)
    throw ConfigError(fmt::format("spheres {} is more than 1,000,000", spheres));
  if (fanout < 1) throw ConfigError(fmt::format("fan-out must be >= 1 (got {})", fanout));
  nodes_.resize(size_t(spheres));
  for (int i = 0; i < spheres; ++i) {
    auto& n = nodes_[size_t(i)];
    n.id = i;
    n.group = i % 12;
    if (i > 0) {
      n.parent = (i - 1) / fanout;
      n.level = nodes_[size_t(n.parent)].level + 1;
      nodes_[size_t(n.parent)].children.push_back(i);
    }
    levels_ = std::max(levels_, n.level + 1);
  }
  height_.assign(size_t(spheres), 0);
  for (int i = spheres - 1; i > 0; --i) {  // children have larger ids than their parent
    int& h = height_[size_t(nodes_[size_t(i)].parent)];
    h = std::max(h, height_[size_t(i)] + 1);
  }
}

std::vector<int> Topology::tier_sizes() const {
  std::vector<int> t(size_t(levels_), 0);
  for (const auto& n : nodes_) ++t[size_t(n.level)];
  return t;
}

std::vector<int> Topology::own_shards(int id, int shards) const {
  std::vector<int> out;
  for (int s = id; s < shards; s += size()) out.push_back(s);
  return out;
}

int Topology::subtree_shards(int id, int shards) const {
  int total = int(own_shards(id, shards).size());
  for (int c : node(id).children) total += subtree_shards(c, shards);
  return total;
}

std::string Topology::render(int shards, int max_lines) const {
  std::string out;
  auto tiers = tier_sizes();
  out += fmt::format("{} spheres, fan-out {}, {} levels; tiers:", size(), fanout_, levels_);
  for (int t : tiers) out += fmt::format(" {}", t);
  out += fmt::format("; {} shards per step\n", shards);
  int lines = 0;
  // Depth-first listing, indented by level.
  std::vector<int> stack{0};
  while (!stack.empty()) {
    const int id = stack.back();
    stack.pop_back();
    if (lines++ >= max_lines) {
      out += fmt::format("... ({} more spheres)\n", size() - max_lines);
      break;
    }
    const auto& n = node(id);
    const auto own = own_shards(id, shards);
    out += fmt::format("{:{}}sphere {} (level {}, group {}, {} children, shards", "", 2 * n.level,
                       id, n.level, n.group, n.children.size());
    if (own.empty()) out += " none";
    for (int s : own) out += fmt::format(" {}", s);
    out += ")\n";
    for (auto it = n.children.rbegin(); it != n.children.rend(); ++it) stack.push_back(*it);
  }
  return out;
}

}  // namespace cllm
