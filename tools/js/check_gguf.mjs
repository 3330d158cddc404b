// Parses a GGUF file with @huggingface/gguf and prints what it found, with each tensor's data
// read from the offset and shape the parser reports.
// Usage: node check_gguf.mjs FILE.gguf
// Prints one JSON line: {"metadata": {key: {"type", "subType", "value"}}, "tensorDataOffset",
//   "tensors": [{"name", "shape", "dtype", "offset", "data": [floats]}]}
import { openSync, readSync, closeSync } from "node:fs";
import { gguf } from "@huggingface/gguf";

const file = process.argv[2];
if (!file) {
  console.error("usage: node check_gguf.mjs FILE.gguf");
  process.exit(2);
}
const { typedMetadata, tensorInfos, tensorDataOffset } = await gguf(file, {
  allowLocalFile: true,
  typedMetadata: true,
});
const big = (_, v) => (typeof v === "bigint" ? Number(v) : v);
const fd = openSync(file, "r");
const tensors = tensorInfos.map((t) => {
  const count = t.shape.reduce((a, b) => a * Number(b), 1);
  const out = { name: t.name, shape: t.shape.map(Number), dtype: t.dtype, offset: Number(t.offset) };
  if (t.dtype === 0) {  // F32
    const buf = Buffer.alloc(count * 4);
    readSync(fd, buf, 0, buf.length, Number(tensorDataOffset + t.offset));
    out.data = Array.from(new Float32Array(buf.buffer, buf.byteOffset, count));
  }
  return out;
});
closeSync(fd);
process.stdout.write(
  JSON.stringify({ metadata: typedMetadata, tensorDataOffset: Number(tensorDataOffset), tensors }, big) +
    "\n",
);
