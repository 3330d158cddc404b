// --precision bf16 end to end: the exact sum keeps the weights bit-identical across sphere
// counts, backends and faults; the setting is part of the run (config.json, checkpoints) and a
// resume with another precision is refused. On a CPU without AVX512_BF16, one clear line.
#include <catch2/catch.hpp>

#include "cli_util.hpp"
#include "src/gemm.hpp"

using namespace e2e;

TEST_CASE("precision bf16: exact everywhere, part of the run's settings", "[e2e][precision]") {
  TempDir tmp;
  const Args bf16 = {"--precision", "bf16"};
  if (!cllm::gemm::has_bf16()) {
    const Result r = run_cli(quick_train(tmp / "refused") + bf16, 30);
    INFO("stderr: " << r.err);
    CHECK(r.code == 2);
    const auto lines = r.err_lines();
    REQUIRE(lines.size() == 1);
    CHECK(contains(lines[0], "--precision bf16"));
    CHECK(contains(lines[0], "AVX512_BF16"));
    return;
  }
  const Result ref = run_cli(quick_train(tmp / "ref") + bf16 + Args{"--spheres", "1"});
  INFO("reference stderr: " << ref.err);
  REQUIRE(ref.code == 0);
  const std::string hash = printed_hash(ref);
  REQUIRE(hash.size() == 64);
  CHECK(contains(read_file(fs::path(tmp / "ref") / "config.json"), "\"precision\": \"bf16\""));

  const Result fp32 = run_cli(quick_train(tmp / "fp32") + Args{"--spheres", "1"});
  REQUIRE(fp32.code == 0);
  CHECK(printed_hash(fp32) != hash);  // the option does change the arithmetic

  const std::vector<Args> variants = {
      {"--spheres", "3", "--fanout", "2", "--threads", "2"},
      {"--backend", "mutex", "--spheres", "2"},
      {"--spheres", "4", "--inject", "crash:sphere=1,step=2"},
  };
  int n = 0;
  for (const auto& v : variants) {
    const Result r = run_cli(quick_train(tmp / ("v" + std::to_string(n++))) + bf16 + v);
    INFO(describe(v) << "\nstderr: " << r.err);
    CHECK(r.code == 0);
    CHECK(printed_hash(r) == hash);
  }

  // Resuming the bf16 run in fp32 is another computation: refused, naming the setting.
  const Result other =
      run_cli(quick_train(tmp / "ref") + Args{"--resume", "--precision", "fp32"}, 30);
  INFO("stderr: " << other.err);
  CHECK(other.code == 2);
  CHECK(contains(other.err, "precision"));
}
