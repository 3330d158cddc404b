#include "actors/checkpoint_writer.hpp"

#include <iostream>

#include "messages/messages.hpp"
#include "src/process_usage.hpp"

namespace cllm {

namespace {
// Writes each snapshot it receives and answers with the outcome: its path and the error text
// ("" when written).
// Class-based on purpose: CAF 0.17 spawns a function-based actor that takes no arguments through
// init_fun_factory with a null shared_ptr<tuple<>> that it dereferences (undefined behaviour,
// reported by UBSan/ASan; see issue 13).
class CheckpointWriter final : public caf::event_based_actor {
 public:
  explicit CheckpointWriter(caf::actor_config& cfg) : caf::event_based_actor(cfg) {}
  const char* name() const override { return "checkpoint_writer"; }
  caf::behavior make_behavior() override {
    return {
        [](checkpoint_atom, const CheckpointRef& ck, const std::string& path, int keep) {
          // Its own thread (detached): on a machine whose every core trains, the writer's CPU
          // (hashing, copying into the kernel) comes from idle time instead of from a sphere.
          // The loop waits for it only at the next checkpoint, if it has not finished by then.
          static thread_local const bool lowered = (run_this_thread_when_idle(), true);
          (void)lowered;
          const CheckpointOutcome o = write_checkpoint_outcome(*ck, path, keep);
          return caf::make_message(o.path, o.error);
        },
    };
  }
};

}  // namespace

ActorCheckpointSink::Config::Config() {
  register_messages(*this);
  set("scheduler.max-threads", 1);
}

ActorCheckpointSink::ActorCheckpointSink()
    : cfg_(std::make_unique<Config>()), sys_(std::make_unique<caf::actor_system>(*cfg_)) {
  // Detached: it blocks on file I/O and fsync, which must not occupy a scheduler thread.
  writer_ = sys_->spawn<CheckpointWriter, caf::detached>();
  self_ = std::make_unique<caf::scoped_actor>(*sys_);
  // A writer that dies never answers (CAF 0.17 drops the messages of a dead actor): waiting for
  // its answer would hang the run at its final checkpoint. Its down message ends the wait.
  (*self_)->monitor(writer_);
}

ActorCheckpointSink::~ActorCheckpointSink() {
  flush();
  self_.reset();  // a live scoped_actor would block await_all_actors_done()
  caf::anon_send_exit(writer_, caf::exit_reason::kill);
  writer_ = nullptr;
  sys_->await_all_actors_done();
}

void ActorCheckpointSink::writer_lost(const std::string& why) {
  writer_alive_ = false;
  std::cerr << "cllm: the checkpoint writer stopped (" << why
            << "); checkpoints are now written by the training loop\n";
  // The snapshot in flight may or may not be on disk: write it again (atomically, by name).
  if (in_flight_ > 0 && pending_.snapshot)
    done_.push_back(write_checkpoint_outcome(*pending_.snapshot, pending_.path, pending_.keep));
  in_flight_ = 0;
  pending_ = Pending{};
}

void ActorCheckpointSink::receive_one(bool wait) {
  auto& self = *self_;
  const auto on_result = [&](const std::string& path, const std::string& err) {
    --in_flight_;
    pending_ = Pending{};
    done_.push_back({path, err});
  };
  const auto on_down = [&](caf::down_msg& dm) {
    if (dm.source == writer_.address()) writer_lost(sys_->render(dm.reason));
  };
  if (wait)
    self->receive(on_result, on_down);
  else
    self->receive(
        on_result, on_down, caf::after(std::chrono::seconds(0)) >> [] {});
}

void ActorCheckpointSink::submit(std::shared_ptr<const Checkpoint> snapshot,
                                 const std::string& path, int keep) {
  // At most one snapshot in flight: a disk slower than the checkpoints makes the loop wait
  // instead of piling up copies of the weights and moments in memory.
  while (in_flight_ > 0) receive_one(true);
  if (!writer_alive_) {
    done_.push_back(write_checkpoint_outcome(*snapshot, path, keep));
    return;
  }
  pending_ = Pending{snapshot, path, keep};
  (*self_)->send(writer_, checkpoint_atom::value, CheckpointRef(std::move(snapshot)), path, keep);
  ++in_flight_;
}

std::vector<CheckpointOutcome> ActorCheckpointSink::poll() {
  if (in_flight_ > 0) receive_one(false);
  return std::exchange(done_, {});
}

std::vector<CheckpointOutcome> ActorCheckpointSink::flush() {
  while (in_flight_ > 0) receive_one(true);
  return std::exchange(done_, {});
}

}  // namespace cllm
