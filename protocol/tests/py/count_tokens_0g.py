"""0G's token count of a JSONL dataset, the way 0G's Python counter does it (the oracle of sealtune's tests).

0G's counter loads the dataset as a Hugging Face DatasetDict and, for each record, adds
``len(tokenizer.encode(example[key]))`` for ``key in ("text", "input", "output") if key in example``,
with ``AutoTokenizer.from_pretrained(model_dir)`` (``encode`` adds special tokens by default).
``messages`` records are first converted: instruction = the last user message, output = the last
assistant message (PROTOCOL.md §3). ``--with-instruction`` also counts ``instruction``.

Usage: python count_tokens_0g.py MODEL_DIR DATASET.jsonl [--with-instruction] [--per-record]

Prints one JSON object: {"records": n, "tokens": total, "seconds": t, "per_record": [...]?}, where
``seconds`` times reading, converting and counting (not importing transformers or loading the tokenizer).
"""

import argparse
import json
import sys
import time

from transformers import AutoTokenizer


def convert(record):
    if "messages" not in record:
        return record
    out = {}
    for message in record["messages"]:
        if message["role"] == "user":
            out["instruction"] = message["content"]
        elif message["role"] == "assistant":
            out["output"] = message["content"]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("dataset")
    ap.add_argument("--with-instruction", action="store_true")
    ap.add_argument("--per-record", action="store_true")
    args = ap.parse_args()

    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    keys = ["text", "input", "output"] + (["instruction"] if args.with_instruction else [])

    start = time.perf_counter()
    total = 0
    records = 0
    per_record = []
    with open(args.dataset, encoding="utf-8-sig") as f:
        for line in f:
            if not line.strip():
                continue
            example = convert(json.loads(line))
            count = 0
            for key in keys:
                if key in example:
                    count += len(tokenizer.encode(example[key]))
            total += count
            records += 1
            if args.per_record:
                per_record.append(count)
    seconds = time.perf_counter() - start

    result = {"records": records, "tokens": total, "seconds": seconds}
    if args.per_record:
        result["per_record"] = per_record
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
