#!/usr/bin/env python3
"""Harness: sealing a trained model straight from its tensors (`seal_model`'s path) vs save-then-seal.

Both variants seal the full SmolLM2-135M (fp32, ~540 MB of tensors) with the wheel's `SealStream` (64 MiB
chunks, AES-256-GCM, the deliverable zip layout), each in a fresh process that first loads the model:

* direct: `add_safetensors` with each tensor's bytes read in place (`seal_model` inside the worker);
* save-then-seal: `safetensors.torch.save_file` to disk, fsync, then the file (mmap'd, read in place) into
  the same stream: what sealing the output directory after `save_pretrained` costs.

Reports seconds for the sealing step and the peak RSS above the loaded model (VmHWM reset through
/proc/self/clear_refs just before). The mmap'd file's page-cache pages count in RSS.
Usage: . scripts/env && python benches/python_seal.py [--python PY_WITH_SEALTUNE] [--rounds 3]
"""

import argparse
import json
import statistics
import subprocess
import sys

RUNNER = r"""
import gc, json, mmap, os, sys, tempfile, time
import torch, sealtune
from sealtune import _native
from transformers import AutoModelForCausalLM

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024  # MiB

def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS

model = AutoModelForCausalLM.from_pretrained(sys.argv[2], dtype=torch.float32)
name, state, files = sealtune._model_files(model)
gc.collect()
nbytes = sum(t.numel() * t.element_size() for t in state.values())
out = {"tensor_bytes": nbytes}
with tempfile.TemporaryDirectory() as tmp:
    reset_peak()
    base = status("VmRSS")
    t0 = time.perf_counter()
    s = _native.SealStream(os.path.join(tmp, "sealed"), "11" * 32)
    if sys.argv[1] == "direct":
        s.add_safetensors(name, sealtune._tensor_specs(state), sealtune._tensor_buffers(state), [("format", "pt")])
    else:
        from safetensors.torch import save_file
        plain = os.path.join(tmp, name)
        save_file(state, plain, metadata={"format": "pt"})
        fd = os.open(plain, os.O_RDONLY); os.fsync(fd); os.close(fd)
        out["save_seconds"] = time.perf_counter() - t0
        out["save_peak_extra_mib"] = status("VmHWM") - base
        with open(plain, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
            s.add_file(name, m)
    r = s.finish()
    out["seconds"] = time.perf_counter() - t0
    out["peak_extra_mib"] = status("VmHWM") - base
    out["zip_len"] = r["zip_len"]
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from huggingface_hub import snapshot_download

    model = snapshot_download("HuggingFaceTB/SmolLM2-135M-Instruct")
    results = {"direct": [], "save_then_seal": []}
    for r in range(args.rounds):
        for variant in results:
            out = subprocess.run([args.python, "-c", RUNNER, variant, model], check=True, capture_output=True, text=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            results[variant].append(res)
            extra = (f" (save_file + fsync {res['save_seconds']:.2f} s, +{res['save_peak_extra_mib']:.0f} MiB)"
                     if "save_seconds" in res else "")
            print(f"round {r + 1} {variant}: {res['seconds']:.2f} s, peak RSS +{res['peak_extra_mib']:.0f} MiB "
                  f"over the loaded model{extra}; {res['tensor_bytes'] / 2**20:.0f} MiB of tensors")
    for variant, runs in results.items():
        print(f"median {variant}: {statistics.median(x['seconds'] for x in runs):.2f} s, "
              f"+{statistics.median(x['peak_extra_mib'] for x in runs):.0f} MiB peak RSS")


if __name__ == "__main__":
    main()
