#pragma once
// A synthetic run folder (config.json, metrics.jsonl, spheres.json, summary.json, sample.txt)
// of any length and tree size, shaped like a real one: for the downsampling test and the
// report benchmark (100,000 steps of 1,741 spheres would take days to train here).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace synth {

struct Options {
  int64_t steps = 100000;
  int spheres = 1741;
  int fanout = 12;
  int eval_every = 200;
  int checkpoint_every = 1000;
  double fault_rate = 0.0005;  // steps with a restart
  uint64_t seed = 1;
  // Spheres of the subtrees of these level-1 spheres run on a remote host ("host" key): the
  // shape spheres.json will have once nodes exist.
  std::vector<std::pair<int, std::string>> remote;
  int nodes = 0;  // > 0: each row carries node_usage for nodes 1..nodes (a cluster run's rows)
};

struct Written {
  double loss_min = std::numeric_limits<double>::infinity(), loss_last = 0;
  int64_t loss_min_step = 0;
  int64_t restart_steps = 0;
};

inline Written write_run(const std::string& dir, const Options& o) {
  uint64_t st = o.seed * 0x9E3779B97F4A7C15ULL + 7;
  auto uniform = [&st] {  // xorshift64*, in [0, 1)
    st ^= st >> 12, st ^= st << 25, st ^= st >> 27;
    return double((st * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
  };
  Written w;
  const double lr_max = 1e-3, lr_min = 1e-4;
  const int64_t warmup = std::min<int64_t>(100, o.steps / 10);
  {
    std::ofstream m(dir + "/metrics.jsonl", std::ios::trunc);
    char buf[512];
    double cpu_s = 0.5;
    for (int64_t s = 1; s <= o.steps; ++s) {
      const double t = double(s);
      const double loss = 2.0 + 3.5 * std::exp(-t / (0.03 * double(o.steps) + 50)) +
                          0.12 * (uniform() - 0.5) + 0.02 * std::sin(t / 37.0);
      const double lr =
          s <= warmup ? lr_max * t / double(warmup)
                      : lr_min + 0.5 * (lr_max - lr_min) *
                                     (1 + std::cos(M_PI * double(s - warmup) /
                                                   double(std::max<int64_t>(1, o.steps - warmup))));
      const double step_ms = 80 + 10 * uniform() + (uniform() < 0.01 ? 60 * uniform() : 0);
      const double tps = 2048.0 / (step_ms / 1000.0);
      const int workers = std::min(o.spheres, 8);
      const double compute = 0.82 * workers * step_ms, fold = 0.03 * workers * step_ms,
                   reduce = 0.02 * workers * step_ms;
      int n = std::snprintf(buf, sizeof buf,
                            "{\"step\":%lld,\"loss\":%.17g,\"lr\":%.17g,\"grad_norm\":%.17g,"
                            "\"tokens_per_s\":%.17g,\"step_ms\":%.17g,\"compute_ms\":%.17g,"
                            "\"fold_ms\":%.17g,\"reduce_ms\":%.17g,\"workers\":%d",
                            static_cast<long long>(s), loss, lr, 0.4 + 0.6 * uniform(), tps,
                            step_ms, compute, fold, reduce, workers);
      std::string row(buf, size_t(n));
      // The process's figures: CPU time of about two busy cores, a steady resident size.
      cpu_s += 1.9 * step_ms / 1000;
      n = std::snprintf(buf, sizeof buf, ",\"cpu_s\":%.3f,\"rss_mb\":%.1f", cpu_s,
                        300 + 20 * uniform());
      row.append(buf, size_t(n));
      // A node's CPU time grows like the root's; node k holds 100 + 10 k MB.
      if (o.nodes > 0) {
        row += ",\"node_usage\":[";
        for (int k = 1; k <= o.nodes; ++k) {
          n = std::snprintf(buf, sizeof buf, "%s{\"node\":%d,\"cpu_s\":%.3f,\"rss_mb\":%.1f}",
                            k > 1 ? "," : "", k, cpu_s, 100.0 + 10.0 * k);
          row.append(buf, size_t(n));
        }
        row += "]";
      }
      if (loss < w.loss_min) w.loss_min = loss, w.loss_min_step = s;
      w.loss_last = loss;
      if (s % o.eval_every == 0 || s == o.steps) {
        const double val = loss + 0.08 + 0.02 * uniform();
        n = std::snprintf(buf, sizeof buf, ",\"val_loss\":%.17g,\"val_bpb\":%.17g", val,
                          val / std::log(2.0));
        row.append(buf, size_t(n));
      }
      if (uniform() < o.fault_rate) {
        row +=
            ",\"faults\":{\"restarts\":1,\"deadline_kills\":0,\"subtree_restarts\":0,"
            "\"events\":[]}";
        ++w.restart_steps;
      }
      if (o.checkpoint_every > 0 && s % o.checkpoint_every == 0 && s < o.steps) {
        n = std::snprintf(buf, sizeof buf, ",\"checkpoint\":\"ckpt-%08lld.safetensors\"",
                          static_cast<long long>(s));
        row.append(buf, size_t(n));
      }
      m << row << "}\n";
    }
  }
  nlohmann::json spheres = nlohmann::json::array();
  int64_t restarts = 0;
  for (int id = 0; id < o.spheres; ++id) {
    const int parent = id == 0 ? -1 : (id - 1) / o.fanout;
    int level = 0;
    for (int p = id; p > 0; p = (p - 1) / o.fanout) ++level;
    const int64_t shards = level == 0 ? 0 : int64_t(50 + 100 * uniform());
    const int64_t r = uniform() < 0.01 ? 1 + int64_t(3 * uniform()) : 0;
    restarts += r;
    std::string host;
    for (int p = id; p > 0; p = (p - 1) / o.fanout)
      for (const auto& [top, name] : o.remote)
        if (p == top) host = name;
    nlohmann::json sp = {{"id", id},
                         {"level", level},
                         {"parent", parent},
                         {"group", id % 12},
                         {"shards", shards},
                         {"compute_ms", double(shards) * (14 + 3 * uniform())},
                         {"fold_ms", double(shards) * 0.4},
                         {"reduce_ms", level < 3 ? 2.0 * double(shards) : 0.0},
                         {"wait_ms", 1000 * uniform()},
                         {"restarts", r}};
    if (!host.empty()) sp["host"] = host;
    spheres.push_back(std::move(sp));
  }
  std::ofstream(dir + "/spheres.json") << spheres.dump(2) << "\n";
  // config.json as the session writes it: the recorded settings and the run's numbers.
  const nlohmann::json config = {
      {"settings",
       {{"spheres", o.spheres},
        {"fanout", o.fanout},
        {"threads", 2},
        {"backend", "actors"},
        {"eval-every", o.eval_every},
        {"checkpoint-every", o.checkpoint_every},
        {"corpus", "synthetic"},
        {"lr", lr_max},
        {"steps", o.steps}}},
      {"run",
       {{"model",
         {{"vocab", 256}, {"d_model", 128}, {"layers", 4}, {"n_heads", 4}, {"context", 128}}},
        {"batch", 16},
        {"micro_batch", 2},
        {"steps", o.steps},
        {"lr", lr_max},
        {"min_lr", lr_min},
        {"warmup", warmup},
        {"weight_decay", 0.1},
        {"clip", 1.0},
        {"seed", 1337}}},
      {"backend", "actors"},
      {"spheres", o.spheres}};
  std::ofstream(dir + "/config.json") << config.dump(2) << "\n";
  const nlohmann::json summary = {
      {"steps", o.steps},       {"backend", "actors"},
      {"spheres", o.spheres},   {"final_loss", w.loss_last},
      {"restarts", restarts},   {"deadline_kills", 0},
      {"subtree_restarts", 0},  {"weights_sha256", std::string(64, 'a')},
      {"stop_reason", ""},      {"checkpoint", dir + "/checkpoints/ckpt-final.safetensors"},
      {"tokens_per_s", 24000.0}};
  std::ofstream(dir + "/summary.json") << summary.dump(2) << "\n";
  std::ofstream(dir + "/sample.txt") << "In the beginning was the synthetic run.\n";
  return w;
}

}  // namespace synth
