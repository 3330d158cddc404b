#pragma once
// The sphere tree: (spheres, fan-out) -> a breadth-first tree. Sphere 0 is the root; the
// children of sphere i are f*i+1 .. f*i+f, so with fan-out 12 the tiers are 1, 12, 144, 1728.
// Shard s of a step is computed by sphere s mod spheres.
#include <cstdint>
#include <string>
#include <vector>

namespace cllm {

struct SphereInfo {
  int id = 0;
  int parent = -1;  // -1 for the root
  int level = 0;    // 0 for the root
  int group = 0;    // symmetry group: id mod 12
  std::vector<int> children;
};

class Topology {
 public:
  // Throws ConfigError for spheres < 1 or fanout < 1 (fanout 1 is a chain).
  Topology(int spheres, int fanout);
  int size() const { return int(nodes_.size()); }
  int fanout() const { return fanout_; }
  int levels() const { return levels_; }
  const SphereInfo& node(int id) const { return nodes_[size_t(id)]; }
  const std::vector<SphereInfo>& nodes() const { return nodes_; }
  std::vector<int> tier_sizes() const;
  // Levels below sphere `id` (0 for a leaf).
  int height(int id) const { return height_[size_t(id)]; }

  // Shards of a step with `shards` shards that sphere `id` computes itself.
  std::vector<int> own_shards(int id, int shards) const;
  // Shards computed anywhere in the subtree of `id` (including itself).
  int subtree_shards(int id, int shards) const;

  std::string render(int shards, int max_lines = 60) const;  // for --print-topology

 private:
  int fanout_, levels_ = 0;
  std::vector<SphereInfo> nodes_;
  std::vector<int> height_;
};

}  // namespace cllm
