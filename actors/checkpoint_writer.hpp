#pragma once
// The checkpoint writer: a separate (detached) actor that receives complete snapshots and
// writes them to disk, so the training loop never waits for the disk. Messages are handled in
// order, so a flush request is answered after every checkpoint submitted before it.
#include <memory>

#include <caf/all.hpp>

#include "src/session.hpp"

namespace cllm {

class ActorCheckpointSink final : public CheckpointSink {
 public:
  ActorCheckpointSink();
  ~ActorCheckpointSink() override;
  void submit(std::shared_ptr<const Checkpoint> snapshot, const std::string& path,
              int keep) override;
  std::vector<std::string> flush() override;

 private:
  struct Config : caf::actor_system_config {
    Config();
  };
  std::unique_ptr<Config> cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  caf::actor writer_;
};

}  // namespace cllm
