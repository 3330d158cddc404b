// The checkpoint writer actor: snapshots are written (and older ones pruned) off the training
// loop, and a writer that dies neither hangs the loop nor loses a checkpoint.
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>

#include <catch2/catch.hpp>

#include "actors/checkpoint_writer.hpp"
#include "src/params.hpp"
#include "tests/temp_dir.hpp"

using namespace cllm;
namespace fs = std::filesystem;

namespace {

using cllm::test::TempDir;

std::shared_ptr<const Checkpoint> snapshot(uint64_t step) {
  auto ck = std::make_shared<Checkpoint>();
  ck->model.vocab = 16, ck->model.d_model = 4, ck->model.layers = 1, ck->model.n_heads = 1;
  ck->model.context = 4;
  const ParamLayout layout(ck->model);
  ck->weights.assign(layout.total(), 0.5f);
  ck->adam_m.assign(layout.total(), 0.0f);
  ck->adam_v.assign(layout.total(), 0.0f);
  ck->step = step;
  ck->run = {{"steps", 10}};
  return ck;
}

std::string path_of(const TempDir& d, uint64_t step) {
  return (d.path / checkpoint_name(step)).string();
}

}  // namespace

namespace {
// The errors among a sink's outcomes (written checkpoints have none).
std::vector<std::string> errors(const std::vector<cllm::CheckpointOutcome>& outcomes) {
  std::vector<std::string> out;
  for (const auto& o : outcomes)
    if (!o.error.empty()) out.push_back(o.path + ": " + o.error);
  return out;
}
}  // namespace

TEST_CASE("the checkpoint writer writes snapshots and keeps the newest K", "[writer]") {
  TempDir dir("cllm-writer");
  ActorCheckpointSink sink;
  for (uint64_t step = 1; step <= 4; ++step) sink.submit(snapshot(step), path_of(dir, step), 2);
  REQUIRE(errors(sink.flush()).empty());
  const auto on_disk = list_checkpoints(dir.path.string());
  REQUIRE(on_disk == std::vector<std::string>{path_of(dir, 3), path_of(dir, 4)});
  REQUIRE(load_checkpoint(path_of(dir, 4)).step == 4);
}

TEST_CASE("a dead checkpoint writer neither hangs the loop nor loses a checkpoint", "[writer]") {
  TempDir dir("cllm-writer");
  ActorCheckpointSink sink;
  sink.submit(snapshot(1), path_of(dir, 1), 5);
  // Killed with a snapshot possibly still in its mailbox: its answer never comes.
  caf::anon_send_exit(sink.writer(), caf::exit_reason::kill);
  sink.submit(snapshot(2), path_of(dir, 2), 5);  // waits for step 1's outcome, then goes on
  sink.submit(snapshot(3), path_of(dir, 3), 5);
  REQUIRE(errors(sink.poll()).empty());
  REQUIRE(errors(sink.flush()).empty());
  REQUIRE(list_checkpoints(dir.path.string()) ==
          std::vector<std::string>{path_of(dir, 1), path_of(dir, 2), path_of(dir, 3)});
  for (uint64_t step = 1; step <= 3; ++step)
    REQUIRE(load_checkpoint(path_of(dir, step)).step == step);
}
