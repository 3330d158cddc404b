// cllm-bench-checkpoint: what one checkpoint costs the thread that writes it (wall and this
// thread's CPU time), for a model of a preset's shape filled with deterministic values.
// Each round times, in this order:
//   copy     the snapshot the training thread takes: the weights and both moments copied into
//            fresh memory (run/session.cpp's first snapshot of a run), the only part of a
//            checkpoint on the training thread
//   recopy   the same into the previous snapshot's buffers (each later snapshot)
//   sha256   one SHA-256 pass over weights, adam_m and adam_v (the unit a checksum costs)
//   save     save_checkpoint: checksums, writing and fsync
//   verify   verify_checkpoint_file: the read-back write_checkpoint_and_prune does after saving
//   total    write_checkpoint_outcome end to end (save, verify, prune), what the background
//            writer of a training run spends per checkpoint
//   load     load_checkpoint, what a resume spends
// The files go to --dir and are removed after each round.
// Usage: cllm-bench-checkpoint [--model gpt2] [--rounds 3] [--dir /tmp]
#include <time.h>
#include <unistd.h>

#include <filesystem>
#include <memory>

#include "bench/bench_util.hpp"
#include "src/checkpoint.hpp"
#include "src/params.hpp"
#include "src/sha256.hpp"
#include "src/stats.hpp"

using namespace cllm;

namespace {

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

struct Cost {
  double wall = 0, cpu = 0;
};

template <class F>
Cost timed(F&& f) {
  const auto w0 = bench::Clock::now();
  const double c0 = thread_cpu_seconds();
  f();
  return {std::chrono::duration<double>(bench::Clock::now() - w0).count(),
          thread_cpu_seconds() - c0};
}

// Weights from the model's own initialisation, moments from a counter hash: no zero pages.
Checkpoint make_checkpoint(const ModelConfig& model) {
  const ParamLayout layout(model);
  Checkpoint ck;
  ck.model = model;
  ck.step = 5;
  ck.seed = 1;
  ck.run = {{"bench", true}};
  ck.weights.assign(layout.total(), 0.0f);
  ck.adam_m.assign(layout.total(), 0.0f);
  ck.adam_v.assign(layout.total(), 0.0f);
  init_parameters(layout, ck.seed, ck.weights.data());
  for (size_t i = 0; i < layout.total(); ++i) {
    const uint64_t h = hash_words(ck.seed, i);
    ck.adam_m[i] = float(int32_t(h)) * 1e-12f;
    ck.adam_v[i] = float(h >> 40) * 1e-15f;
  }
  ck.grad_scale_exp.assign(layout.tensors().size(), 0);
  return ck;
}

}  // namespace

int main(int argc, char** argv) {
  return bench::bench_main("cllm-bench-checkpoint", [&] {
    std::string preset = "gpt2", dir = "/tmp";
    int rounds = 3;
    cli::OptionTable t;
    t.add("--model", "NAME", "model preset (tiny, small, base, gpt2, gpt2-medium)", preset,
          [&](auto& v) { preset = v; });
    bench::add_int(t, "--rounds", "rounds (each writes, verifies and loads)", rounds, 1);
    t.add("--dir", "DIR", "folder for the checkpoint files (removed after each round)", dir,
          [&](auto& v) { dir = v; });
    bench::parse_options(t, argc, argv,
                         "usage: cllm-bench-checkpoint [options]\nCPU and wall time of writing, "
                         "verifying and loading one checkpoint.\n");
    namespace fs = std::filesystem;
    if (!fs::is_directory(dir))
      throw cli::UsageError(fmt::format("--dir '{}' is not a folder", dir));
    const Checkpoint ck = make_checkpoint(model_preset(preset));
    const ParamLayout layout(ck.model);
    const double gb = 3.0 * double(layout.total()) * sizeof(float) / 1e9;
    const std::string sub =
        (fs::path(dir) / fmt::format("cllm-bench-ckpt.{}", ::getpid())).string();
    fs::create_directories(sub);
    const std::string path = (fs::path(sub) / checkpoint_name(ck.step)).string();
    fmt::print("model {} ({}), {:.3f} GB of tensors, {} rounds, files in {}\ncpu: {}\n", preset,
               ck.model.describe(), gb, rounds, sub, bench::cpu_model());
    const char* names[] = {"copy", "recopy", "sha256", "save", "verify", "total", "load"};
    constexpr int kPhases = 7;
    std::vector<double> wall[kPhases], cpu[kPhases];
    fmt::print("{:>5}", "round");
    for (const char* n : names) fmt::print(" {:>15}", fmt::format("{} wall/cpu", n));
    fmt::print("\n");
    for (int r = 0; r < rounds; ++r) {
      Cost c[kPhases];
      auto copy = std::make_shared<Checkpoint>();
      const auto fill = [&] {
        copy->weights.assign(ck.weights.begin(), ck.weights.end());
        copy->adam_m.assign(ck.adam_m.begin(), ck.adam_m.end());
        copy->adam_v.assign(ck.adam_v.begin(), ck.adam_v.end());
      };
      c[0] = timed(fill);
      c[1] = timed(fill);
      copy.reset();
      c[2] = timed([&] {
        Sha256 sha;
        for (const auto* v : {&ck.weights, &ck.adam_m, &ck.adam_v})
          for (const auto& ti : layout.tensors())
            sha.update(v->data() + ti.offset, ti.size * sizeof(float));
        sha.finish();
      });
      c[3] = timed([&] { save_checkpoint(path, ck); });
      c[4] = timed([&] { verify_checkpoint_file(path, ck); });
      fs::remove(path);
      c[5] = timed([&] {
        const CheckpointOutcome out = write_checkpoint_outcome(ck, path, 1);
        if (!out.error.empty()) throw std::runtime_error(out.error);
      });
      c[6] = timed([&] {
        if (load_checkpoint(path).step != ck.step) throw std::runtime_error("loaded a wrong step");
      });
      fs::remove(path);
      fmt::print("{:>5}", r + 1);
      for (int i = 0; i < kPhases; ++i) {
        wall[i].push_back(c[i].wall);
        cpu[i].push_back(c[i].cpu);
        fmt::print(" {:>7.2f}/{:<7.2f}", c[i].wall, c[i].cpu);
      }
      fmt::print("\n");
    }
    fmt::print("{:>5}", "med");
    for (int i = 0; i < kPhases; ++i)
      fmt::print(" {:>7.2f}/{:<7.2f}", median(wall[i]), median(cpu[i]));
    fmt::print(
        "\n(seconds; cpu = this thread's CPU time, kernel included; the kernel's writeback "
        "threads are not counted)\n");
    fs::remove_all(sub);
    return 0;
  });
}
