#pragma once
// The sphere tree: (spheres, fan-out) -> a breadth-first tree of positions. Sphere 0 is the top;
// the children of sphere i are f*i+1 .. f*i+f, so with fan-out 12 the levels hold 1, 12, 144, 1728.
// A ShardPlan says which sphere computes which shard of a step (the placement).
#include <cstdint>
#include <string>
#include <vector>

namespace cllm {

// Spheres are grouped by id mod 12 in the statistics (the 12 of the kissing-spheres level).
constexpr int kSymmetryGroups = 12;

struct SphereInfo {
  int id = 0;
  int parent = -1;  // -1 for sphere 0
  int level = 0;    // 0 for sphere 0
  int group = 0;    // symmetry group: id mod kSymmetryGroups
  std::vector<int> children;
};

class Topology {
 public:
  // Throws ConfigError for spheres outside [1, 1,000,000] or fanout < 1 (fanout 1 is a chain).
  Topology(int spheres, int fanout);
  int size() const { return int(positions_.size()); }
  int levels() const { return levels_; }
  // A position of the tree (docs/glossary.md: a node is a process, not a position).
  const SphereInfo& position(int id) const { return positions_[size_t(id)]; }
  const std::vector<SphereInfo>& positions() const { return positions_; }
  std::vector<int> level_sizes() const;
  // Levels below sphere `id` (0 for a leaf).
  int height(int id) const { return height_[size_t(id)]; }
  std::string describe() const;  // "1741 spheres, fan-out 12, 4 levels: 1 12 144 1584"

 private:
  int fanout_, levels_ = 0;
  std::vector<SphereInfo> positions_;
  std::vector<int> height_;
};

// Where shards are computed.
//   bfs:    shard s -> sphere s mod S in breadth-first order: sphere 0 and the top levels compute,
//           and work travels the fewest hops; with fewer shards than spheres the deep levels idle.
//   leaves: shard s -> the leaves, dealt round-robin over sphere 0's subtrees (then over theirs):
//           inner spheres only pass work down and fold sums up, every message crosses the whole
//           depth, and each computing sphere holds a workspace of its own.
enum class Placement { bfs, leaves };
Placement parse_placement(const std::string& text);  // throws ConfigError
const char* placement_name(Placement p);

// The placement of a step with `shards` shards on a topology, computed once in O(spheres).
class ShardPlan {
 public:
  ShardPlan(const Topology& topo, int shards, Placement placement = Placement::bfs);
  int shards() const { return shards_; }
  Placement placement() const { return placement_; }
  // Shards sphere `id` computes itself, ascending.
  std::vector<int> own(int id) const;
  int own_count(int id) const { return own_begin_[size_t(id) + 1] - own_begin_[size_t(id)]; }
  // Shards computed anywhere in the subtree of `id` (itself included).
  int subtree(int id) const { return subtree_[size_t(id)]; }
  int owner(int shard) const { return owner_[size_t(shard)]; }
  int computing_spheres() const { return computing_; }
  // --print-topology: the tree, indented, with each sphere's shards.
  std::string render(const Topology& topo, int max_lines = 60) const;

 private:
  int shards_;
  Placement placement_;
  std::vector<int> owner_;      // per shard
  std::vector<int> own_begin_;  // per sphere, into own_list_ (size spheres + 1)
  std::vector<int> own_list_;   // shards grouped by owner
  std::vector<int> subtree_;    // per sphere
  int computing_ = 0;
};

// How a step's shards (or positions) are dealt over the members of a cluster (the root's local
// subtree, each node) in proportion to their weights: each goes to the member with the fewest
// per unit of weight so far (ties: the earlier member), so the deal interleaves; every member of
// positive weight gets at least one when there are enough. Members of weight 0 get none; at least
// one must have more.
std::vector<std::vector<size_t>> deal_shards(const std::vector<size_t>& positions,
                                             const std::vector<double>& weight);

// The weights to deal by: each member's measured pace (shards per second, its answers' latency
// included) once every member that takes shards has one, else their capacities (threads).
// Where a shard is computed does not change a bit, so a slow or distant member may take fewer.
std::vector<double> deal_weights(const std::vector<int>& capacity, const std::vector<double>& pace);

}  // namespace cllm
