#pragma once
// The checkpoint writer: a separate (detached) actor that receives complete snapshots and
// writes them to disk, so the training loop does not wait for the disk. It answers each
// snapshot with its outcome, which the loop collects without waiting (poll) or at the end.
// Should the writer die, the sink notices (it monitors the writer), rewrites the snapshot that was
// in flight and writes every later one itself: nothing waits forever and nothing is lost.
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
  // The writer actor (tests kill it to show that the sink survives its death).
  const caf::actor& writer() const { return writer_; }

 private:
  void receive_one(bool wait);
  void writer_lost(const std::string& why);
  struct Config : caf::actor_system_config {
    Config();
  };
  std::unique_ptr<Config> cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  caf::actor writer_;
  std::unique_ptr<caf::scoped_actor> self_;  // sends snapshots, receives the writer's answers
  int in_flight_ = 0;
  bool writer_alive_ = true;
  struct Pending {
    std::shared_ptr<const Checkpoint> snapshot;
    std::string path;
    int keep = 0;
  } pending_;  // the snapshot in flight
  std::vector<CheckpointOutcome> done_;
};

}  // namespace cllm
