// The topology planner: tree shape, levels, heights and where shards go.
#include <catch2/catch.hpp>

#include <numeric>
#include <set>

#include "src/config.hpp"
#include "src/topology.hpp"

using namespace cllm;

TEST_CASE("topology: breadth-first tree with the kissing-spheres levels", "[topology]") {
  const Topology t(1741, 12);
  REQUIRE(t.size() == 1741);
  REQUIRE(t.levels() == 4);
  REQUIRE(t.level_sizes() == std::vector<int>{1, 12, 144, 1584});
  REQUIRE(t.position(0).parent == -1);
  REQUIRE(t.position(1).parent == 0);
  REQUIRE(t.position(12).parent == 0);
  REQUIRE(t.position(13).parent == 1);
  REQUIRE(t.position(157).parent == 13);
  REQUIRE(t.position(157).level == 3);
  REQUIRE(t.position(25).group == 25 % kSymmetryGroups);
  REQUIRE(t.height(0) == 3);
  REQUIRE(t.height(1) == 2);
  REQUIRE(t.height(145) == 0);  // a level-2 sphere without children
  for (const auto& n : t.positions())
    for (int c : n.children) REQUIRE(t.position(c).parent == n.id);
}

TEST_CASE("topology: impossible shapes are refused", "[topology]") {
  REQUIRE_THROWS_AS(Topology(0, 12), ConfigError);
  REQUIRE_THROWS_AS(Topology(1'000'001, 12), ConfigError);
  REQUIRE_THROWS_AS(Topology(10, 0), ConfigError);
  REQUIRE_THROWS_AS(parse_placement("random"), ConfigError);
}

TEST_CASE("shard plan bfs: shard s on sphere s mod S", "[topology]") {
  const Topology t(13, 3);
  const ShardPlan p(t, 20, Placement::bfs);
  for (int s = 0; s < 20; ++s) REQUIRE(p.owner(s) == s % 13);
  REQUIRE(p.own(0) == std::vector<int>{0, 13});
  REQUIRE(p.own(12) == std::vector<int>{12});
  REQUIRE(p.computing_spheres() == 13);
  // Subtree counts: sphere 1 has children 4, 5, 6 -> shards {1, 14}, {4, 17}, {5, 18}, {6, 19}.
  REQUIRE(p.subtree(1) == 8);
  REQUIRE(p.subtree(0) == 20);
  REQUIRE(p.subtree(4) == 2);
}

TEST_CASE("shard plan leaves: only leaves compute, dealt over the root's subtrees", "[topology]") {
  const Topology t(1741, 12);
  const ShardPlan p(t, 24, Placement::leaves);
  std::set<int> top;
  for (int s = 0; s < 24; ++s) {
    const int owner = p.owner(s);
    REQUIRE(t.position(owner).children.empty());
    int id = owner;
    while (t.position(id).parent != 0) id = t.position(id).parent;
    if (s < 12) REQUIRE(top.insert(id).second);  // the first 12 go to 12 different subtrees
  }
  REQUIRE(top.size() == 12);
  REQUIRE(p.computing_spheres() == 24);
  REQUIRE(p.subtree(0) == 24);
  for (int i = 1; i <= 12; ++i) REQUIRE(p.subtree(i) == 2);
}

TEST_CASE("shard plan: every shard exactly once, subtree sums consistent", "[topology]") {
  for (const auto& [spheres, fanout] : {std::pair{1, 12}, {2, 1}, {7, 2}, {157, 12}, {1000, 3}}) {
    for (Placement pl : {Placement::bfs, Placement::leaves}) {
      const Topology t(spheres, fanout);
      const ShardPlan p(t, 37, pl);
      INFO("spheres " << spheres << " fanout " << fanout << " " << placement_name(pl));
      std::vector<int> seen;
      for (int i = 0; i < spheres; ++i) {
        const auto mine = p.own(i);
        REQUIRE(int(mine.size()) == p.own_count(i));
        seen.insert(seen.end(), mine.begin(), mine.end());
        int sum = p.own_count(i);
        for (int c : t.position(i).children) sum += p.subtree(c);
        REQUIRE(p.subtree(i) == sum);
      }
      std::sort(seen.begin(), seen.end());
      std::vector<int> all(37);
      std::iota(all.begin(), all.end(), 0);
      REQUIRE(seen == all);
    }
  }
}

TEST_CASE("topology: a chain of a million spheres is planned without recursion", "[topology]") {
  const Topology t(1'000'000, 1);
  REQUIRE(t.levels() == 1'000'000);
  REQUIRE(t.height(0) == 999'999);
  const ShardPlan bfs(t, 8, Placement::bfs);
  REQUIRE(bfs.subtree(0) == 8);
  REQUIRE(bfs.subtree(8) == 0);
  const ShardPlan leaves(t, 8, Placement::leaves);
  REQUIRE(leaves.owner(0) == 999'999);
  REQUIRE(leaves.subtree(500'000) == 8);
  REQUIRE(bfs.render(t, 5).size() < 2000);
}

TEST_CASE("deal: shards go by weight, interleaved; capacities until every pace is measured",
          "[topology]") {
  std::vector<size_t> all(8);
  std::iota(all.begin(), all.end(), size_t(0));
  // Equal weights interleave; 5:3 gives five and three; a weight of 0 gets none.
  auto dealt = deal_shards(all, {1.0, 1.0});
  REQUIRE(dealt[0] == std::vector<size_t>{0, 2, 4, 6});
  REQUIRE(dealt[1] == std::vector<size_t>{1, 3, 5, 7});
  dealt = deal_shards(all, {50.0, 30.0, 0.0});
  REQUIRE(dealt[0].size() == 5);
  REQUIRE(dealt[1].size() == 3);
  REQUIRE(dealt[2].empty());
  REQUIRE_THROWS(deal_shards(all, {0.0, 0.0}));

  // A member not measured yet (a node that just joined): every member by capacity.
  REQUIRE(deal_weights({2, 1}, {0.0, 40.0}) == std::vector<double>{2.0, 1.0});
  REQUIRE(deal_weights({2, 1}, {}) == std::vector<double>{2.0, 1.0});
  // All measured: by pace; a member of capacity 0 (leaving) takes none, measured or not.
  REQUIRE(deal_weights({2, 1, 0}, {90.0, 40.0, 0.0}) == std::vector<double>{90.0, 40.0, 0.0});
  REQUIRE(deal_weights({2, 0}, {90.0, 70.0}) == std::vector<double>{90.0, 0.0});
}

TEST_CASE("deal: a member measured slow still gets one shard, to be measured again", "[topology]") {
  std::vector<size_t> all(8);
  std::iota(all.begin(), all.end(), size_t(0));
  const auto dealt = deal_shards(all, {1000.0, 1.0});
  REQUIRE(dealt[0].size() == 7);
  REQUIRE(dealt[1] == std::vector<size_t>{1});
  // Fewer positions than members: by weight alone.
  const auto few = deal_shards({0}, {1.0, 5.0});
  REQUIRE(few[0].empty());
  REQUIRE(few[1] == std::vector<size_t>{0});
}
