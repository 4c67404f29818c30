"""Records reference fixtures with llama.cpp (through llama-cpp-python); run it through
scripts/record-fixtures, which picks the venv made by scripts/build-reference.

Writes, for SmolLM2 and for every preset of the tiny-model writer:
  tests/fixtures/tokenizer/<model>.json  token ids of a fixed set of strings
  tests/fixtures/generate/<model>.json   greedy continuations with top-5 logprobs per step

Conventions the fixtures encode (the consumer must follow them):
- Tokenizer cases: ids = llama_tokenize(text, add_special, parse_special). add_special adds
  BOS (and EOS) only where the vocabulary asks for it (tokenizer.ggml.add_bos_token, the
  sentencepiece default), exactly as llama.cpp does.
- Generate cases: prompt_ids = tokenize(prompt, add_special=true, parse_special=true); the
  prompt is evaluated in one batch, then one token per eval (plain incremental decode,
  n_threads=1). Each step: the chosen token is the argmax of the raw logits (lowest id on a
  tie) and top_logprobs are the 5 largest entries of log_softmax(logits) (float64 from
  llama.cpp's float32 logits), best first, rounded to 5 decimals. A case stops early when the
  chosen token is an end-of-generation token (that token is recorded).
- model_sha256 is the sha256 of the GGUF file the fixture was recorded on.
"""

import argparse
import hashlib
import json
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import llama_cpp

ROUND_DIGITS = 5
TOP_K = 5

# (text, add_special, parse_special)
TOKENIZER_CASES = [
    ("Hello world", False, False),
    ("Hello world", True, False),
    ("Hello, world! How are you today?", False, False),
    ("The quick brown fox jumps over the lazy dog.", False, False),
    (" leading space", False, False),
    (" leading space", True, False),
    ("trailing space ", False, False),
    ("  two leading spaces", False, False),
    ("multiple    spaces   between words", False, False),
    (" ", False, False),
    ("tabs\tand\ttabs\t\t", False, False),
    ("line one\nline two\n\nline four", False, False),
    ("\n\n\n", False, False),
    ("\r\n windows line end\r\n", False, False),
    ("1234567890", False, False),
    ("3.14159265358979 and 2,718,281,828", False, False),
    ("The year 2024 had 366 days; 100000000000 is big.", False, False),
    ("mixed: abc123def 4x4 v2.0.1", False, False),
    ("Hello!!! What?! (yes) [no] {maybe} -- ok... 'quoted' \"double\"", False, False),
    ("don't I'm we'll they've she'd it's can't", False, False),
    ("DON'T I'M WE'LL", False, False),
    ("caf\u00e9 na\u00efve r\u00e9sum\u00e9 Z\u00fcrich fa\u00e7ade", False, False),
    ("\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac: \u03b3\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u03ba\u03cc\u03c3\u03bc\u03b5", False, False),
    ("\u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u0442\u0435\u043a\u0441\u0442: \u043f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440", False, False),
    ("\u4e2d\u6587\uff1a\u4f60\u597d\uff0c\u4e16\u754c\u3002\u65e5\u672c\u8a9e\uff1a\u3053\u3093\u306b\u3061\u306f\u4e16\u754c", False, False),
    ("\ud55c\uad6d\uc5b4 \uc548\ub155\ud558\uc138\uc694", False, False),
    ("\u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u0645\u0631\u062d\u0628\u0627", False, False),
    ("\u0939\u093f\u0928\u094d\u0926\u0940 \u0928\u092e\u0938\u094d\u0924\u0947", False, False),
    ("emoji \U0001F600\U0001F389 \U0001F680", False, False),
    ("family \U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466 ZWJ", False, False),
    ("flags \U0001F1EB\U0001F1F7\U0001F1EF\U0001F1F5\U0001F1FA\U0001F1F8", False, False),
    ("skin tone \U0001F44D\U0001F3FD", False, False),
    ("def add(a, b):\n    return a + b\n", False, False),
    ("for (int i = 0; i < n; ++i) { sum += x[i]; }", False, False),
    ("https://example.com/path?q=1&r=two#frag", False, False),
    ("<|im_start|>user\nhi<|im_end|>", False, True),
    ("<|im_start|>user\nhi<|im_end|>", False, False),
    ("<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n", True, True),
    ("<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n", False, False),
    ("<|endoftext|>", False, True),
    ("<s>hello</s> <unk>", False, True),
    ("<s>hello</s> <unk>", False, False),
    ("", False, False),
    ("", True, False),
    ("\u00a0non-breaking\u00a0space", False, False),
    ("zero\u200bwidth\ufeffbom", False, False),
    ("e\u0301 combining acute", False, False),
    ("\U0010FFFF max code point \uFFFF", False, False),
    ("\ue000 private use", False, False),
    ("\U0001D518\U0001D52B\U0001D526\U0001D520\U0001D52C\U0001D521\U0001D522 math letters", False, False),
]

SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
GENERATE_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n",
    "Here is a list of fruits:\n1.",
    "<|im_start|>system\n" + SMOLLM2_SYSTEM + "<|im_end|>\n"
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
]

SMOLLM2_STEPS = 32
TINY_STEPS = 16
MAX_CTX = 512


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def engine_name(reference_dir):
    version = llama_cpp.__version__
    changelog = Path(reference_dir) / "src" / f"llama_cpp_python-{version}" / "CHANGELOG.md"
    commit = "unknown"
    if changelog.is_file():
        section = changelog.read_text().split(f"## [{version}]", 1)[-1]
        match = re.search(r"llama\.cpp@([0-9a-f]{7,40})", section)
        if match:
            commit = match.group(1)[:12]
    return f"llama.cpp {commit} (llama-cpp-python {version})"


def load(model_path, n_ctx):
    kwargs = dict(model_path=str(model_path), n_ctx=n_ctx, n_threads=1, n_threads_batch=1,
                  n_batch=n_ctx, logits_all=True, seed=0)
    try:
        return llama_cpp.Llama(verbose=False, **kwargs)
    except Exception as quiet_error:
        print(f"record-fixtures: llama.cpp refused {model_path}: {quiet_error}; "
              "its log follows", file=sys.stderr)
        try:
            llama_cpp.Llama(verbose=True, **kwargs)
        except Exception:
            pass
        raise


def tokenize(llm, text, add_special, parse_special):
    return llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)


def tokenizer_fixture(llm, model_name, engine, model_sha256):
    cases = [{"text": text, "add_special": add_special, "parse_special": parse_special,
              "ids": tokenize(llm, text, add_special, parse_special)}
             for text, add_special, parse_special in TOKENIZER_CASES]
    return {"model": model_name, "engine": engine, "model_sha256": model_sha256,
            "cases": cases}


def log_softmax(logits):
    values = np.asarray(logits, dtype=np.float64)
    shifted = values - values.max()
    return shifted - math.log(np.exp(shifted).sum())


def greedy_case(llm, prompt, steps):
    prompt_ids = tokenize(llm, prompt, True, True)
    llm.reset()
    llm.eval(prompt_ids)
    tokens, top_logprobs = [], []
    for step in range(steps):
        logits = llm.scores[llm.n_tokens - 1]
        chosen = int(np.argmax(logits))
        logprobs = log_softmax(logits)
        best = np.argsort(-logprobs, kind="stable")[:TOP_K]
        tokens.append(chosen)
        top_logprobs.append([[int(i), round(float(logprobs[i]), ROUND_DIGITS)] for i in best])
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, chosen) or step + 1 == steps:
            break
        llm.eval([chosen])
    return {"prompt": prompt, "prompt_ids": prompt_ids, "tokens": tokens,
            "top_logprobs": top_logprobs}


def generate_fixture(llm, model_name, engine, model_sha256, n_ctx, steps):
    cases = [greedy_case(llm, prompt, steps) for prompt in GENERATE_PROMPTS]
    return {"model": model_name, "engine": engine, "model_sha256": model_sha256,
            "n_ctx": n_ctx, "add_special": True, "parse_special": True,
            "cases": cases}


def to_json(value, indent=0):
    """JSON with dicts and long nestings expanded, flat lists and id pairs on one line."""
    pad = " " * indent
    if isinstance(value, dict):
        items = [f'{pad} {json.dumps(k)}: {to_json(v, indent + 1).lstrip()}'
                 for k, v in value.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and any(isinstance(v, dict) or
                                       (isinstance(v, list) and v and isinstance(v[0], list))
                                       for v in value):
        items = [to_json(v, indent + 1) for v in value]
        return pad + "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return pad + json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_json(data) + "\n", encoding="utf-8")
    print(f"record-fixtures: wrote {path} ({path.stat().st_size} bytes)", file=sys.stderr)


def record(model_path, model_name, steps, out_dir, engine):
    llm = load(model_path, MAX_CTX)
    n_ctx = min(MAX_CTX, llm._model.n_ctx_train())
    if n_ctx < MAX_CTX:
        llm = load(model_path, n_ctx)
    digest = sha256_of(model_path)
    write_json(out_dir / "tokenizer" / f"{model_name}.json",
               tokenizer_fixture(llm, model_name, engine, digest))
    write_json(out_dir / "generate" / f"{model_name}.json",
               generate_fixture(llm, model_name, engine, digest, n_ctx, steps))


def tiny_presets(tool):
    listing = subprocess.run([tool, "--list"], check=True, capture_output=True, text=True)
    return [line.split()[0] for line in listing.stdout.splitlines() if line.strip()]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-dir", required=True)
    parser.add_argument("--out", type=Path, required=True, help="tests/fixtures")
    parser.add_argument("--smollm2", type=Path, help="SmolLM2 GGUF (skipped when absent)")
    parser.add_argument("--tiny-tool", help="troupe-tiny-model executable (skipped when absent)")
    parser.add_argument("--only", nargs="*", help="model names to record (default: all)")
    args = parser.parse_args()

    engine = engine_name(args.reference_dir)
    wanted = set(args.only) if args.only else None
    failures = []
    if args.smollm2 and (wanted is None or "smollm2" in wanted):
        record(args.smollm2, "smollm2", SMOLLM2_STEPS, args.out, engine)
    if args.tiny_tool:
        with tempfile.TemporaryDirectory() as tmp:
            for preset in tiny_presets(args.tiny_tool):
                if wanted is not None and preset not in wanted:
                    continue
                gguf = Path(tmp) / f"{preset}.gguf"
                subprocess.run([args.tiny_tool, "--spec", preset, "--out", str(gguf)],
                               check=True)
                try:
                    record(gguf, preset, TINY_STEPS, args.out, engine)
                except Exception as error:
                    failures.append(f"{preset}: {error}")
    for failure in failures:
        print(f"record-fixtures: FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
