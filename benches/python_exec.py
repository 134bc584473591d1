#!/usr/bin/env python3
"""Harness: training steps/s of the stock LoRA script inside the worker's executor vs plain `python`.

The same script (`scripts/training/lora_causal_lm.py`), data and params run, interleaved:

* plain: `python lora_causal_lm.py ...` (no sealtune module: as 0G's image runs it);
* worker: `sealtune-worker exec <task dir>` (embedded CPython, the sealtune module live with its
  TrainerCallback, the adapter sealed in the child). This harness plays the worker's parent: it writes
  `exec.json`, hands the child an event pipe (`SEALTUNE_EVENTS_FD`) and the model key on stdin.

Steps/s = steps / `train_runtime` as the HF Trainer measures it (the training loop only: not imports,
model load or sealing). Usage:
    . scripts/env && python benches/python_exec.py --worker $CARGO_TARGET_DIR/release/sealtune-worker [--rounds 3]
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts/training/lora_causal_lm.py"
RECORDS = [
    {"instruction": "What is the capital of France?", "output": "Paris is the capital of France."},
    {"instruction": "Say hello", "input": "in French", "output": "Bonjour!"},
    {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
    {"instruction": "Color of the sky?", "output": "Blue."},
] * 8


def plain_run(model: str, tmp: Path, steps: int) -> float:
    import datasets

    data = tmp / "plain-data"
    if not data.exists():
        flat = []
        for r in RECORDS:
            if "messages" in r:
                r = {"instruction": r["messages"][0]["content"], "output": r["messages"][1]["content"]}
            flat.append({"instruction": r["instruction"], "input": r.get("input"), "output": r["output"]})
        datasets.DatasetDict({"train": datasets.Dataset.from_list(flat)}).save_to_disk(str(data))
    cfg = tmp / "cfg.json"
    cfg.write_text(json.dumps({"max_steps": steps, "per_device_train_batch_size": 2, "learning_rate": 0.0002}))
    runner = "import sys, runpy; sys.modules['sealtune'] = None; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    out = subprocess.run([sys.executable, "-c", runner, str(SCRIPT), "--data_path", str(data), "--model_path", model,
                          "--config_path", str(cfg), "--output_dir", str(tmp / "plain-out")],
                         check=True, capture_output=True, text=True).stdout
    runtime = float(re.search(r"'train_runtime': '([0-9.]+)'", out).group(1))
    return steps / runtime


def worker_run(worker: str, model: str, tmp: Path, steps: int, n: int) -> float:
    task = tmp / f"task-{n}"
    task.mkdir()
    (task / "dataset.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    (task / "cfg.json").write_text(json.dumps({"max_steps": steps, "per_device_train_batch_size": 2, "learning_rate": 0.0002}))
    spec = {
        "script": str(SCRIPT), "dataset": str(task / "dataset.jsonl"), "data_type": "text",
        "data_path": str(task / "data"), "model_path": model, "config_path": str(task / "cfg.json"),
        "output_dir": str(task / "out"), "seal": {"key_hex": "", "sealed_path": str(task / "model.sealed")},
    }
    (task / "exec.json").write_text(json.dumps(spec))
    r, w = os.pipe()
    env = dict(os.environ, SEALTUNE_EVENTS_FD=str(w), PYTHONUNBUFFERED="1")
    child = subprocess.Popen([worker, "exec", str(task)], env=env, pass_fds=(w,), stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(w)
    child.stdin.write(b"11" * 32 + b"\n")
    child.stdin.close()
    runtime = None
    with os.fdopen(r, "rb") as events:
        for line in events:
            e = json.loads(line)
            if e["type"] == "metric" and e["name"] == "train_runtime":
                runtime = e["value"]
            if e["type"] == "failed":
                raise RuntimeError(e["reason"])
    child.wait()
    if child.returncode != 0 or runtime is None:
        raise RuntimeError(child.stderr.read().decode()[-2000:])
    return steps / runtime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", required=True, help="path of the sealtune-worker binary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    from huggingface_hub import snapshot_download

    model = snapshot_download("HuggingFaceTB/SmolLM2-135M-Instruct")
    plain, inside = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            p = plain_run(model, Path(tmp), args.steps)
            w = worker_run(args.worker, model, Path(tmp), args.steps, r)
            plain.append(p)
            inside.append(w)
            print(f"round {r + 1}: plain python {p:.3f} steps/s, inside the worker {w:.3f} steps/s, ratio {w / p:.3f}")
    mp, mw = statistics.median(plain), statistics.median(inside)
    print(f"median: plain {mp:.3f} steps/s, worker {mw:.3f} steps/s, ratio {mw / mp:.3f}")


if __name__ == "__main__":
    main()
