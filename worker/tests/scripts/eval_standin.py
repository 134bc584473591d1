"""A torch-free stand-in for the stock LoRA script (worker/tests/worker_report.rs).

With a `validation` split in the prepared dataset it reports four training steps and known eval
metrics (exactly representable, so the report must carry these very numbers); without one it
reports nothing at all, as an official 0G script that knows no `sealtune` module does. Either way it
writes a small "adapter" to the output directory.
"""

import argparse
import json
import os

import sealtune

KNOWN = {"base_eval_loss": 3.25, "base_perplexity": 25.75, "eval_loss": 1.5, "perplexity": 4.5}
LOSSES = [2.5, 2.0, 1.75, 1.625]

p = argparse.ArgumentParser()
for a in ("--data_path", "--model_path", "--config_path", "--output_dir"):
    p.add_argument(a, required=True)
args = p.parse_args()

with open(os.path.join(args.data_path, "dataset_dict.json")) as f:
    splits = json.load(f)["splits"]
if "validation" in splits:
    for step, loss in enumerate(LOSSES, start=1):
        sealtune.report(step=step, total=len(LOSSES), loss=loss)
    for name, value in KNOWN.items():
        sealtune.metric(name, value)

os.makedirs(args.output_dir, exist_ok=True)
with open(os.path.join(args.output_dir, "adapter_model.safetensors"), "wb") as f:
    f.write(b"weights")
with open(os.path.join(args.output_dir, "adapter_config.json"), "w") as f:
    json.dump({"r": 8}, f)
print("eval stand-in done", flush=True)
