#pragma once
// The checkpoint writer: a separate (detached) actor that receives complete snapshots and
// writes them to disk, so the training loop does not wait for the disk. It answers each
// snapshot with its outcome, which the loop collects without waiting (poll) or at the end.
#include <memory>

#include <caf/all.hpp>

#include "src/checkpoint.hpp"

namespace cllm {

class ActorCheckpointSink final : public CheckpointSink {
 public:
  ActorCheckpointSink();
  ~ActorCheckpointSink() override;
  void submit(std::shared_ptr<const Checkpoint> snapshot, const std::string& path,
              int keep) override;
  std::vector<CheckpointOutcome> poll() override;
  std::vector<CheckpointOutcome> flush() override;

 private:
  void receive_one(bool wait);
  struct Config : caf::actor_system_config {
    Config();
  };
  std::unique_ptr<Config> cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  caf::actor writer_;
  std::unique_ptr<caf::scoped_actor> self_;  // sends snapshots, receives the writer's answers
  int in_flight_ = 0;
  std::vector<CheckpointOutcome> done_;
};

}  // namespace cllm
