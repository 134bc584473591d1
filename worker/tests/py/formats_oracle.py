"""The oracle of tests/dataset_formats.rs: one generated dataset written in every format with Python's
own libraries, then read back with Python's own readers, shaped by each dataset_type the way Axolotl's
prompters do, and counted the way 0G's counter does (``len(tokenizer.encode(field))`` per billed field).

Usage: python formats_oracle.py ROWS.jsonl OUT_DIR TYPES.json MODEL_DIR...

Writes into OUT_DIR: rows.json (an indented array, like alpaca_data.json), rows.csv (header row),
rows.parquet (pyarrow, snappy), hf.zip (``Dataset.save_to_disk`` zipped), chat.parquet (a
``messages`` list<struct> column), and malformed files: bad.parquet (a null output in row 3),
bad_hf.zip (a null output in row 2), cut.parquet (truncated). Prints
{model_dir: {file: [{"records", "tokens"} per type]}}; a type the file cannot take is null.
"""

import csv
import json
import sys
import zipfile
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from transformers import AutoTokenizer

ALPACA = {
    "format": "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n",
    "no_input_format": "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n",
}


def write_all(rows, out):
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "rows.json", "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=4, ensure_ascii=False)
    columns = ["instruction", "input", "output", "system"]
    with open(out / "rows.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, restval="")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) or "" for k in columns})
    table = pa.Table.from_pylist([{k: r.get(k) for k in columns} for r in rows])
    pq.write_table(table, out / "rows.parquet", row_group_size=7)
    datasets.disable_progress_bars()
    hf = out / "hf"
    datasets.Dataset.from_list([{k: r.get(k) for k in columns} for r in rows]).save_to_disk(str(hf))
    zip_dir(hf, out / "hf.zip")
    chat = [
        {"messages": [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}]}
        for r in rows
    ]
    pq.write_table(pa.Table.from_pylist(chat), out / "chat.parquet")
    # Malformed files.
    bad = [{"instruction": "a", "output": "b"}] * 2 + [{"instruction": "c", "output": None}]
    pq.write_table(pa.Table.from_pylist(bad), out / "bad.parquet")
    bad_hf = out / "bad_hf"
    datasets.Dataset.from_list(bad[1:]).save_to_disk(str(bad_hf))
    zip_dir(bad_hf, out / "bad_hf.zip")
    whole = (out / "rows.parquet").read_bytes()
    (out / "cut.parquet").write_bytes(whole[: len(whole) // 2])


def zip_dir(folder, target):
    with zipfile.ZipFile(target, "w") as z:
        for p in sorted(folder.rglob("*")):
            z.write(p, f"{folder.name}/{p.relative_to(folder)}")


def read_back(out):
    """Each file as Python's own readers give its rows."""
    with open(out / "rows.json", encoding="utf-8") as f:
        files = {"rows.json": json.load(f)}
    with open(out / "rows.csv", encoding="utf-8", newline="") as f:
        files["rows.csv"] = list(csv.DictReader(f))
    files["rows.parquet"] = pq.read_table(out / "rows.parquet").to_pylist()
    files["hf.zip"] = [dict(r) for r in datasets.load_from_disk(str(out / "hf"))]
    files["chat.parquet"] = pq.read_table(out / "chat.parquet").to_pylist()
    return files


def shape(row, t):
    """The billed strings of one row under dataset_type t (None: 0G's shapes and field sum)."""
    if t is None or t == "instruct":
        if "messages" in row:
            users = [m["content"] for m in row["messages"] if m["role"] == "user"]
            assistants = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
            row = {"instruction": users[-1], "output": assistants[-1]}
        return [row[k] for k in ("text", "input", "output") if isinstance(row.get(k), str)]
    if t == "pretrain":
        return [row["text"]]
    if t == "alpaca":
        t = ALPACA
    if "field" in t:
        return [row[t["field"]]]
    instruction = row[t.get("field_instruction", "instruction")]
    output = row[t.get("field_output", "output")]
    inp = row.get(t.get("field_input", "input")) or ""
    system = row.get(t.get("field_system", "system")) or t.get("system_prompt", "")
    prompt = t.get("system_format", "{system}").format(system=system) if system else ""
    if inp:
        prompt += t.get("format", "{instruction} {input} ").format(instruction=instruction, input=inp)
    else:
        prompt += t.get("no_input_format", "{instruction} ").format(instruction=instruction)
    return [prompt, output]


def main():
    rows_path, out, types_path, *models = sys.argv[1:]
    out = Path(out)
    with open(rows_path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    with open(types_path, encoding="utf-8") as f:
        types = json.load(f)
    write_all(rows, out)
    files = read_back(out)
    result = {}
    for model in models:
        tok = AutoTokenizer.from_pretrained(model)
        per_file = {}
        for name, file_rows in files.items():
            counts = []
            for t in types:
                if name == "chat.parquet" and t is not None:
                    counts.append(None)
                    continue
                tokens = sum(len(tok.encode(s)) for r in file_rows for s in shape(r, t))
                counts.append({"records": len(file_rows), "tokens": tokens})
            per_file[name] = counts
        result[model] = per_file
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
