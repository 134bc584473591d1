#!/usr/bin/env python3
"""Harness: `sealtune.count_tokens` (the Python API over protocol's Rust counter) vs 0G's Python counter.

Generates a deterministic ~10 MB JSONL (instruction, chat and text records), then runs, interleaved, in
separate processes: 0G's counter (`protocol/tests/py/count_tokens_0g.py`: `AutoTokenizer`, one `encode` per
field per record) and `sealtune.count_tokens(path, model_dir)`. Each process times only its read + count
(not imports or the tokenizer load). Prints every round, the medians and the ratio; the counts must match.

Usage (figures in BENCHMARKS.md, "sealtune Python module"):
    . scripts/env && python benches/python_tokens.py [--python PY_WITH_SEALTUNE] [--rounds 5]
"""

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("the model learns from examples and a provider runs training on data while customers verify "
         "every signature of the sealed deliverable über naïve 東京 🎉 1234 3.14").split()


def generate(path: Path, target: int = 10 << 20) -> None:
    rnd = random.Random(7)

    def text(n):
        return " ".join(rnd.choice(WORDS) for _ in range(n + rnd.randrange(n)))

    size = 0
    with open(path, "w", encoding="utf-8") as f:
        while size < target:
            kind = rnd.randrange(3)
            if kind == 0:
                rec = {"instruction": text(20), "input": text(30), "output": text(300)}
            elif kind == 1:
                rec = {"messages": [{"role": "user", "content": text(20)}, {"role": "assistant", "content": text(300)}]}
            else:
                rec = {"text": text(400)}
            line = json.dumps(rec, ensure_ascii=False) + "\n"
            f.write(line)
            size += len(line.encode())


SEALTUNE_RUNNER = r"""
import json, sys, time, sealtune
counter = sealtune.TokenCounter(sys.argv[1] + "/tokenizer.json")
t = time.perf_counter()
n = sealtune.count_tokens(sys.argv[2], counter)
print(json.dumps({"tokens": n, "seconds": time.perf_counter() - t}))
"""


def model_dir() -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download("HuggingFaceTB/SmolLM2-135M-Instruct")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default=sys.executable, help="interpreter with the sealtune wheel installed")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    model = model_dir()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.jsonl"
        generate(data)
        print(f"dataset: {data.stat().st_size} bytes, {sum(1 for _ in open(data))} records")
        ours, theirs = [], []
        for r in range(args.rounds):
            a = json.loads(subprocess.run([sys.executable, str(ROOT / "protocol/tests/py/count_tokens_0g.py"), model, str(data)],
                                          check=True, capture_output=True, text=True).stdout)
            b = json.loads(subprocess.run([args.python, "-c", SEALTUNE_RUNNER, model, str(data)],
                                          check=True, capture_output=True, text=True).stdout)
            assert a["tokens"] == b["tokens"], (a, b)
            theirs.append(a["seconds"])
            ours.append(b["seconds"])
            print(f"round {r + 1}: 0G python {a['seconds']:.2f} s, sealtune.count_tokens {b['seconds']:.2f} s, "
                  f"ratio {a['seconds'] / b['seconds']:.2f}x, tokens {a['tokens']}")
        mo, mt = statistics.median(ours), statistics.median(theirs)
        print(f"median: 0G python {mt:.2f} s, sealtune {mo:.2f} s, ratio {mt / mo:.2f}x")


if __name__ == "__main__":
    main()
