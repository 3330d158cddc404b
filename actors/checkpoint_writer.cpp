#include "actors/checkpoint_writer.hpp"

#include "messages/messages.hpp"

namespace cllm {

namespace {
struct WriterState {
  static inline const char* name = "checkpoint-writer";
  std::vector<std::string> errors;
};

caf::behavior checkpoint_writer(caf::stateful_actor<WriterState>* self) {
  return {
      [=](checkpoint_atom, const CheckpointRef& ck, const std::string& path, int keep) {
        try {
          write_checkpoint_and_prune(*ck, path, keep);
        } catch (const std::exception& e) {
          self->state.errors.push_back(e.what());
        }
      },
      [=](flush_atom) { return std::exchange(self->state.errors, {}); },
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
}

ActorCheckpointSink::~ActorCheckpointSink() {
  flush();
  caf::anon_send_exit(writer_, caf::exit_reason::kill);
  writer_ = nullptr;
  sys_->await_all_actors_done();
}

void ActorCheckpointSink::submit(std::shared_ptr<const Checkpoint> snapshot,
                                 const std::string& path, int keep) {
  caf::anon_send(writer_, checkpoint_atom::value, CheckpointRef(std::move(snapshot)), path, keep);
}

std::vector<std::string> ActorCheckpointSink::flush() {
  std::vector<std::string> errors;
  caf::scoped_actor self{*sys_};
  self->request(writer_, caf::infinite, flush_atom::value)
      .receive([&](std::vector<std::string>& e) { errors = std::move(e); },
               [&](caf::error& e) { errors.push_back("checkpoint writer: " + sys_->render(e)); });
  return errors;
}

}  // namespace cllm
