// A deliberate data race between a CAF actor and the main thread, for tools/sanitize-tsan.sh
// --caf-tsan: before a run of "0 reports" is believed, this program must draw a report (TSan is
// live and sees through CAF's scheduler), and its ordered variant must not (CAF's hand-offs are
// seen as synchronisation, not reported). Not part of the product or of CI.
#include <caf/all.hpp>
#include <chrono>
#include <string>
#include <thread>

namespace {
int shared_counter = 0;  // bumped by actors and by the main thread

caf::behavior bumper(caf::event_based_actor*) {
  return {[](int n) {
    for (int i = 0; i < n; ++i) ++shared_counter;
    return n;
  }};
}

void wait_for(caf::scoped_actor& self, const caf::actor& a, int n) {
  self->request(a, caf::infinite, n).receive([](int) {}, [](caf::error&) {});
}
}  // namespace

int main(int argc, char** argv) {
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", 2);
  caf::actor_system sys{cfg};
  auto a = sys.spawn(bumper), b = sys.spawn(bumper);
  caf::scoped_actor self{sys};
  if (argc > 1 && std::string(argv[1]) == "racy") {
    // The main thread writes after the send, the actor before its reply: nothing orders the two
    // (a send orders only what the sender did before it).
    self->send(a, 1000);
    ++shared_counter;
    // Let the actor run now: a later message taken from its mailbox together with the first
    // would order the write above before the actor's (CAF takes a mailbox's messages at once).
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  } else {  // the main thread writes only after the reply: ordered by the hand-off
    wait_for(self, a, 1000);
    ++shared_counter;
    wait_for(self, b, 1000);
  }
  wait_for(self, a, 0);
  wait_for(self, b, 0);
  return 0;
}
