#!/usr/bin/env python3
"""Harness: the stock LoRA script as 1 process vs N gloo ranks (torchrun's environment contract).

The same script (`scripts/training/lora_causal_lm.py`), data and params, interleaved rounds:

* 1 process: `python lora_causal_lm.py ...` with OMP_NUM_THREADS = all cores;
* N ranks: N `python lora_causal_lm.py ...` with RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set, as
  the worker's executor sets them (`worker/src/exec/ranks.rs`), OMP_NUM_THREADS = cores / N each.

Steps/s = steps / `train_runtime` as the HF Trainer measures it (rank 0's; the training loop only).
Each rank's step processes `per_device_train_batch_size` records, so N ranks process N x the records
per step. Plain `python`, not the embedded interpreter: `python_exec.py` measures that difference.
Usage:
    . scripts/env && python benches/python_ranks.py [--ranks 2] [--rounds 3] [--steps 8]
"""

import argparse
import json
import os
import re
import socket
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
    {"instruction": "Color of the sky?", "output": "Blue."},
    {"instruction": "2+2?", "output": "4"},
]


def smollm2() -> str:
    cache = Path(os.environ["HF_HUB_CACHE"]) / "models--HuggingFaceTB--SmolLM2-135M-Instruct" / "snapshots"
    return str(next(cache.iterdir()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(world: int, steps: int, work: Path) -> float:
    data = work / "data"
    data.mkdir(exist_ok=True)
    with open(data / "d.jsonl", "w") as f:
        for _ in range(16):
            for r in RECORDS:
                f.write(json.dumps(r) + "\n")
    params = work / "params.json"
    params.write_text(json.dumps({"max_steps": steps, "per_device_train_batch_size": 2}))
    cores = os.cpu_count() or 1
    port = free_port()
    procs = []
    for rank in range(world):
        env = dict(os.environ, OMP_NUM_THREADS=str(max(1, cores // world)), HF_HUB_OFFLINE="1")
        if world > 1:
            env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                       LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        out = work / f"out{rank}"
        procs.append(subprocess.Popen(
            [sys.executable, str(SCRIPT), "--data_path", str(data), "--model_path", smollm2(),
             "--config_path", str(params), "--output_dir", str(out)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate()[0] for p in procs]
    for p, o in zip(procs, outputs):
        if p.returncode != 0:
            sys.exit(f"a run failed:\n{o[-3000:]}")
    runtime = re.search(r"'train_runtime': '?([0-9.]+)", outputs[0])
    if not runtime:
        sys.exit(f"no train_runtime in:\n{outputs[0][-3000:]}")
    return steps / float(runtime.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    single, multi = [], []
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            single.append(run(1, args.steps, Path(a)))
            multi.append(run(args.ranks, args.steps, Path(b)))
        print(f"round {i + 1}: 1 process {single[-1]:.3f} steps/s, {args.ranks} ranks {multi[-1]:.3f} steps/s", flush=True)
    s, m = statistics.median(single), statistics.median(multi)
    cores = os.cpu_count() or 1
    print(f"median: 1 process ({cores} threads) {s:.3f} steps/s = {s / cores:.3f} per core; "
          f"{args.ranks} ranks ({max(1, cores // args.ranks)} thread(s) each) {m:.3f} steps/s = {m / cores:.3f} per core "
          f"({args.ranks}x the records per step); ratio {m / s:.2f}")


if __name__ == "__main__":
    main()
