#include "run/observers.hpp"

#include <atomic>
#include <cmath>
#include <ostream>

#include <fmt/format.h>

#include "run/sysinfo.hpp"
#include "src/clock.hpp"
#include "src/step_fingerprint.hpp"

namespace cllm {

namespace {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = int64_t(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t % 3600) / 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

const char* kind_name(int32_t kind) {
  switch (kind) {
    case FaultEvent::missed_deadline:
      return "missed_deadline";
    case FaultEvent::gave_up:
      return "gave_up";
    case FaultEvent::node_joined:
      return "node_joined";
    case FaultEvent::node_left:
      return "node_left";
    case FaultEvent::node_lost:
      return "node_lost";
    case FaultEvent::owner_lost:
      return "owner_lost";
    case FaultEvent::exchange_failed:
      return "exchange_failed";
    default:
      return "crashed";
  }
}

}  // namespace

nlohmann::json metrics_row(const StepRecord& r) {
  nlohmann::json row = {{"step", r.step},
                        {"loss", r.loss},
                        {"lr", r.lr},
                        {"grad_norm", r.grad_norm},
                        {"tokens_per_s", r.tokens_per_s},
                        {"step_ms", r.step_ms},
                        {"compute_ms", r.timing.compute_ms},
                        {"fold_ms", r.timing.fold_ms},
                        {"reduce_ms", r.timing.reduce_ms},
                        {"wait_ms", r.timing.wait_ms},
                        {"optimizer_ms", r.timing.optimizer_ms},
                        {"spheres_computing", r.timing.spheres}};
  if (r.eval) {
    row["val_loss"] = r.eval->loss;
    row["val_bpb"] = r.eval->bits_per_byte;
  }
  // Written only when > 0, so that the rows of every ordinary step keep their bytes. Rows written
  // before docs/glossary.md say "redos" (the same number); nothing reads either key.
  if (r.attempt > 0) row["attempt"] = r.attempt;
  if (r.members.nodes > 0) {
    row["nodes"] = r.members.nodes;
    row["spheres"] = r.members.spheres;
    row["network_ms"] = r.timing.network_ms;
    row["bytes_sent"] = r.timing.bytes_sent;
    row["bytes_received"] = r.timing.bytes_received;
    // Each node's process as it answered its last request of the step, rounded as the root's own
    // cpu_s and rss_mb below.
    nlohmann::json usage = nlohmann::json::array();
    for (const NodeUsage& u : r.timing.nodes)
      usage.push_back({{"node", u.node},
                       {"cpu_s", std::round(u.cpu_s * 1e3) / 1e3},
                       {"rss_mb", std::round(u.rss_mb * 10) / 10}});
    if (!usage.empty()) row["node_usage"] = std::move(usage);
  }
  if (r.faults.any()) {
    nlohmann::json events = nlohmann::json::array();
    for (const auto& e : r.faults.events)
      events.push_back({{"kind", kind_name(e.kind)}, {"sphere", e.sphere}, {"reason", e.reason}});
    row["faults"] = {{"restarts", r.faults.restarts},
                     {"deadline_kills", r.faults.deadline_kills},
                     {"subtree_restarts", r.faults.subtree_restarts},
                     {"events", events}};
  }
  return row;
}

void MetricsLog::on_step(const StepRecord& r) {
  nlohmann::json row = metrics_row(r);
  if (weights_.layout && (r.step % weights_.every == 0 || r.step == r.last_step)) {
    const StepFingerprint fp = step_fingerprint(*weights_.layout, weights_.weights());
    row["weights_fp"] = fp.weights_hex();
    row["tensors_fp"] = fp.tensors_hex();
  }
  row["cpu_s"] = std::round(process_cpu_s() * 1e3) / 1e3;
  row["rss_mb"] = std::round(current_rss_mb() * 10) / 10;
  if (checkpoint_every_ > 0 && r.step % checkpoint_every_ == 0 && r.step < r.last_step)
    row["checkpoint"] = checkpoint_name(uint64_t(r.step));
  if (first_step_ > 0 && r.step == first_step_ + 1) row["resumed_from"] = first_step_;
  file_.append(row.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

nlohmann::json spheres_json(const std::vector<SphereStats>& stats) {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& st : stats) {
    nlohmann::json o = {
        {"id", st.id}, {"level", st.level}, {"parent", st.parent}, {"group", st.group}};
    if (st.node >= 0) o.update({{"node", st.node}, {"host", st.host}});
    if (!st.known) {
      o["statistics"] = "lost: the tree gave up";
    } else {
      o.update({{"shards", st.shards},
                {"compute_ms", st.compute_ms},
                {"fold_ms", st.fold_ms},
                {"reduce_ms", st.reduce_ms},
                {"wait_ms", st.wait_ms},
                {"restarts", st.restarts}});
    }
    arr.push_back(std::move(o));
  }
  return arr;
}

void SpheresSnapshot::on_step(const StepRecord&) {
  const double t = seconds_now();
  if (written_at_ >= 0 && t - written_at_ < interval_s_) return;
  try {
    folder_.write("spheres.json", spheres_json(backend_.sphere_stats()).dump(2) + "\n");
  } catch (const std::exception&) {
    // a live snapshot only: the final write at the end of the run reports its errors
  }
  written_at_ = seconds_now();
  interval_s_ = std::max(1.0, 100 * (written_at_ - t));
}

ProgressLine::ProgressLine(std::ostream& out, bool in_place, int64_t log_every, int64_t first_step)
    : out_(out),
      in_place_(in_place),
      log_every_(std::max<int64_t>(1, log_every)),
      first_step_(first_step),
      start_s_(seconds_now()) {}

ProgressLine::~ProgressLine() {
  if (in_place_ && wrote_) out_ << "\n" << std::flush;
}

void ProgressLine::on_step(const StepRecord& r) {
  if (r.eval) last_val_ = r.eval->loss;
  const double elapsed = seconds_now() - start_s_;
  const double eta = elapsed / double(r.step - first_step_) * double(r.last_step - r.step);
  const std::string members = r.members.nodes > 0 ? fmt::format(" | nodes {} | spheres {}",
                                                                r.members.nodes, r.members.spheres)
                                                  : std::string();
  const std::string line = fmt::format(
      "step {}/{} | loss {:.4f} | val {} | {:.0f} tok/s{} | ETA {}", r.step, r.last_step, r.loss,
      last_val_ >= 0 ? fmt::format("{:.4f}", last_val_) : std::string("-"), r.tokens_per_s, members,
      format_duration(eta));
  wrote_ = true;
  if (in_place_)
    out_ << "\r" << line << "\033[K" << std::flush;
  else if (r.step % log_every_ == 0 || r.step == r.last_step || r.step == first_step_ + 1)
    out_ << line << "\n" << std::flush;
}

void EventLog::on_step(const StepRecord& r) {
  add(r.faults);
  bytes_sent_ += r.timing.bytes_sent, bytes_received_ += r.timing.bytes_received;
  if (r.members.nodes > 0) network_ms_.push_back(r.timing.network_ms);
}

void EventLog::add(const FaultCounts& f) {
  FaultCounts counters = f;
  counters.events.clear();
  totals_ += counters;
  for (const auto& e : f.events) {
    const std::string when = e.step >= 0 ? fmt::format(" in step {}", e.step + 1) : "";
    switch (e.kind) {
      case FaultEvent::node_joined:
        err_ << fmt::format("cllm: {} joined{}\n", e.reason, when);
        continue;
      case FaultEvent::node_left:
        err_ << fmt::format("cllm: {} left{}\n", e.reason, when);
        continue;
      case FaultEvent::node_lost:
        err_ << fmt::format("cllm: lost {}{}\n", e.reason, when);
        continue;
      case FaultEvent::exchange_failed:
        err_ << fmt::format("cllm: {}{}\n", e.reason, when);
        continue;
      case FaultEvent::owner_lost:
        if (reasons_[e.reason]++ == 0)
          err_ << fmt::format(
              "cllm: the owner of slice {} failed{}: {} (restarted, the step's sums computed "
              "again; more of this kind are counted in summary.json)\n",
              e.sphere, when, e.reason);
        continue;
      default:
        break;
    }
    if (reasons_[e.reason]++ > 0) continue;
    const char* what = e.kind == FaultEvent::missed_deadline ? "was killed"
                       : e.kind == FaultEvent::gave_up       ? "gave up"
                                                             : "crashed";
    err_ << fmt::format(
        "cllm: sphere {} {}{}: {} (restarted; more of this kind are counted in "
        "summary.json)\n",
        e.sphere, what, when, e.reason);
  }
}

std::shared_ptr<const Checkpoint> CheckpointSnapshots::take(const TrainState& st,
                                                            const Tokenizer& tok,
                                                            const nlohmann::json& settings) {
  std::shared_ptr<Checkpoint> ck;
  if (last_ && last_.use_count() == 1) {
    // The writer's release of its reference happens before we write into its buffers.
    std::atomic_thread_fence(std::memory_order_acquire);
    ck = std::move(last_);
  } else {
    ck = std::make_shared<Checkpoint>();
  }
  if (!tokenizer_data_) tokenizer_data_ = tok.serialize();
  ck->model = st.config().model;
  ck->tokenizer_kind = tok.kind();
  ck->tokenizer_data = *tokenizer_data_;
  ck->step = uint64_t(st.step());
  ck->seed = st.config().seed;
  ck->run = st.config().to_json();
  ck->run["settings"] = settings;
  ck->weights.assign(st.weights()->begin(), st.weights()->end());
  ck->adam_m.assign(st.adam().m.begin(), st.adam().m.end());
  ck->adam_v.assign(st.adam().v.begin(), st.adam().v.end());
  ck->grad_scale_exp = st.grad_scale_exp();
  last_ = ck;
  return ck;
}

CheckpointCadence::CheckpointCadence(const RunFolder& folder, CheckpointSink& sink,
                                     Snapshot snapshot, int64_t every, int keep, std::ostream& err)
    : folder_(folder),
      sink_(sink),
      snapshot_(std::move(snapshot)),
      every_(every),
      keep_(keep),
      err_(err) {}

void CheckpointCadence::report(const std::vector<CheckpointOutcome>& outcomes) {
  for (const auto& o : outcomes) {
    if (o.error.empty()) {
      newest_good_ = o.path;
    } else {
      err_ << "cllm: checkpoint error: " << o.error << "\n";
      failed_ = true;
    }
  }
}

void CheckpointCadence::on_step(const StepRecord& r) {
  if (every_ > 0 && r.step % every_ == 0 && r.step < r.last_step)
    sink_.submit(snapshot_(), folder_.checkpoint_path(r.step), keep_);
  report(sink_.poll());  // say so now, not at the end of a long run
}

void CheckpointCadence::finish(int64_t step) {
  try {
    sink_.submit(snapshot_(), folder_.checkpoint_path(step), keep_);
  } catch (const std::exception& e) {  // bad_alloc for the snapshot: the older ones stand
    err_ << "cllm: checkpoint error: " << e.what() << "\n";
    failed_ = true;
  }
  report(sink_.flush());
}

}  // namespace cllm
