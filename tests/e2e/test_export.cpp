// End-to-end tests of tokenizers and export as a user runs them: `cllm tokenizer`, `cllm train
// --tokenizer`, and `cllm export` checked by loaders that are not ours: a PyTorch GPT-2
// (tools/hf_gpt2_reference.py, Debian's python3-torch) for model.safetensors, tokenizers.js
// (npm @huggingface/tokenizers) for tokenizer.json and the GGUF parser (npm @huggingface/gguf).
// The build passes their paths in; a missing tool fails these tests (it never skips them).
#include <algorithm>
#include <cmath>

#include <catch2/catch.hpp>

#include "cli_util.hpp"
#include "src/bpe.hpp"
#include "src/checkpoint.hpp"
#include "src/model.hpp"
#include "src/params.hpp"

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
  expect("gpt2.block_count", 4, m.n_layers);
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
  CHECK(t.size() == size_t(5 + 12 * m.n_layers));
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
  for (int l = 0; l < m.n_layers; ++l) {
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
    for (const auto& e : fs::directory_iterator(tmp.path()))
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
