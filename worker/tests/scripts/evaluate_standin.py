"""A torch-free stand-in for the stock script's evaluate mode (worker/tests/worker_evaluate.rs).

It runs under the evaluation contract of docs/PROTOCOL.md §10: `--config_path` names the opened
model (`{"evaluate": {"tuned_model_path": DIR}}`), `--model_path` the base. It checks that the model
it was given is the delivered adapter in plaintext (the quick training script's weights), takes 3 s
(so a test can kill the worker during the run), then reports known metrics (exactly representable:
the signed report must carry these very numbers) and prints them (the worker must keep them out of
the task log until the settlement).
"""

import argparse
import json
import os
import time

import sealtune

KNOWN = {"base_eval_loss": 3.25, "base_perplexity": 25.75, "eval_loss": 1.25, "perplexity": 3.5}

p = argparse.ArgumentParser()
for a in ("--data_path", "--model_path", "--config_path", "--output_dir"):
    p.add_argument(a, required=True)
args = p.parse_args()

with open(args.config_path) as f:
    tuned = json.load(f)["evaluate"]["tuned_model_path"]
with open(os.path.join(tuned, "adapter_model.safetensors"), "rb") as f:
    weights = f.read()
if not weights.startswith(b"weights-"):
    raise SystemExit(f"the evaluated model is not the delivered adapter: {weights[:16]!r}")
if not os.path.exists(os.path.join(args.data_path, "dataset_dict.json")):
    raise SystemExit("no prepared evaluation dataset")
time.sleep(3)
for name, value in KNOWN.items():
    print(f"{name} {value}", flush=True)
    sealtune.metric(name, value)
print("evaluation stand-in done", flush=True)
