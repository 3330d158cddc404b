// Loads an exported Hugging Face folder's tokenizer.json + tokenizer_config.json with
// @huggingface/tokenizers (tokenizers.js) and encodes a UTF-8 text file with it.
// Usage: node check_tokenizer.mjs HF_DIR TEXT_FILE
// Prints one JSON line: {"ids": [...], "decoded": "...", "vocab_size": N}
import { readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";

const [dir, textFile] = process.argv.slice(2);
if (!dir || !textFile) {
  console.error("usage: node check_tokenizer.mjs HF_DIR TEXT_FILE");
  process.exit(2);
}
const tokenizerJson = JSON.parse(readFileSync(`${dir}/tokenizer.json`, "utf8"));
const tokenizerConfig = JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, "utf8"));
const tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);
// fatal: a file that is not valid UTF-8 is an error here, not silently replaced characters.
const text = new TextDecoder("utf-8", { fatal: true }).decode(readFileSync(textFile));
const { ids } = tokenizer.encode(text, { add_special_tokens: false });
const decoded = tokenizer.decode(ids, { skip_special_tokens: false });
process.stdout.write(
  JSON.stringify({ ids, decoded, vocab_size: Object.keys(tokenizerJson.model.vocab).length }) + "\n",
);
