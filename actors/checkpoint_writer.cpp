#include "actors/checkpoint_writer.hpp"

#include "messages/messages.hpp"

namespace cllm {

namespace {
// Writes each snapshot it receives and answers with the outcome: its path and the error text
// ("" when written).
caf::behavior checkpoint_writer(caf::event_based_actor*) {
  return {
      [](checkpoint_atom, const CheckpointRef& ck, const std::string& path, int keep) {
        const CheckpointOutcome o = write_checkpoint_outcome(*ck, path, keep);
        return caf::make_message(o.path, o.error);
      },
  };
}
}  // namespace

ActorCheckpointSink::Config::Config() {
  register_messages(*this);
  set("scheduler.max-threads", 1);
}

ActorCheckpointSink::ActorCheckpointSink()
    : cfg_(std::make_unique<Config>()), sys_(std::make_unique<caf::actor_system>(*cfg_)) {
  // Detached: it blocks on file I/O and fsync, which must not occupy a scheduler thread.
  writer_ = sys_->spawn<caf::detached>(checkpoint_writer);
  self_ = std::make_unique<caf::scoped_actor>(*sys_);
}

ActorCheckpointSink::~ActorCheckpointSink() {
  flush();
  self_.reset();  // a live scoped_actor would block await_all_actors_done()
  caf::anon_send_exit(writer_, caf::exit_reason::kill);
  writer_ = nullptr;
  sys_->await_all_actors_done();
}

void ActorCheckpointSink::receive_one(bool wait) {
  auto& self = *self_;
  const auto on_result = [&](const std::string& path, const std::string& err) {
    --in_flight_;
    done_.push_back({path, err});
  };
  if (wait)
    self->receive(on_result);
  else
    self->receive(
        on_result, caf::after(std::chrono::seconds(0)) >> [] {});
}

void ActorCheckpointSink::submit(std::shared_ptr<const Checkpoint> snapshot,
                                 const std::string& path, int keep) {
  // At most one snapshot in flight: a disk slower than the checkpoints makes the loop wait
  // instead of piling up copies of the weights and moments in memory.
  while (in_flight_ > 0) receive_one(true);
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
