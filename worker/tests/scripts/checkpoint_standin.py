"""A torch-free stand-in for a checkpointing trainer (worker/tests/worker_checkpoint.rs).

It uses the `sealtune` checkpoint API exactly as the stock LoRA script does through the Trainer:
`sealtune.checkpointing()` gives the tmpfs checkpoint directory, the interval and the checkpoint to
resume from; every `every` steps it writes `checkpoint-<step>/` there as a Trainer would (a state
file, and a file holding a plaintext marker the test looks for on disk), then calls
`sealtune.checkpoint_saved(step)`. With `link` in the file named by `QUICK_SCRIPT_MODE_FILE`, the
checkpoint's secret file is a link to a file only root can read (the worker must not seal through
it); with `fail`, the script fails after the checkpoint of step 4. Resuming, it reads the step back from the unsealed checkpoint,
checks the marker survived the round trip, and goes on from the next step: steps are never repeated.
"""

import argparse
import json
import os
import time

import sealtune

TOTAL = 6
MARKER = "PLAINTEXT-CHECKPOINT-" + "MARKER-7f3a"  # split: the script file must not hold it
STEP_SECONDS = 0.7

p = argparse.ArgumentParser()
for a in ("--data_path", "--model_path", "--config_path", "--output_dir"):
    p.add_argument(a, required=True)
args = p.parse_args()

mode_file = os.environ.get("QUICK_SCRIPT_MODE_FILE")
mode = open(mode_file).read().strip() if mode_file and os.path.exists(mode_file) else "ok"

ck = sealtune.checkpointing()
if ck is None:
    raise RuntimeError("the worker gave no checkpoint settings")
st = os.stat(ck.dir)
print(f"checkpoint dir mode {st.st_mode & 0o777:o} uid {st.st_uid} mine {os.getuid()}", flush=True)

start = 0
if ck.resume_from is not None:
    with open(os.path.join(ck.resume_from, "trainer_state.json")) as f:
        start = json.load(f)["global_step"]
    with open(os.path.join(ck.resume_from, "optimizer", "secret.txt")) as f:
        if f.read() != MARKER * 64:
            raise RuntimeError("the resumed checkpoint lost its content")
    print(f"resumed at step {start} from {os.path.basename(ck.resume_from)}", flush=True)

for step in range(start + 1, TOTAL + 1):
    time.sleep(STEP_SECONDS)
    sealtune.report(step=step, total=TOTAL, loss=1.0 / step)
    if step % ck.every == 0:
        out = os.path.join(ck.dir, f"checkpoint-{step}")
        os.makedirs(os.path.join(out, "optimizer"))
        with open(os.path.join(out, "trainer_state.json"), "w") as f:
            json.dump({"global_step": step}, f)
        if mode == "link":
            os.symlink("/etc/shadow", os.path.join(out, "optimizer", "secret.txt"))
        else:
            with open(os.path.join(out, "optimizer", "secret.txt"), "w") as f:
                f.write(MARKER * 64)
        sealtune.checkpoint_saved(step)
        if mode == "fail" and step == 4:
            time.sleep(2)  # the worker seals it meanwhile
            raise RuntimeError("the stand-in fails after its checkpoint of step 4")

os.makedirs(args.output_dir, exist_ok=True)
with open(os.path.join(args.output_dir, "adapter_model.safetensors"), "wb") as f:
    f.write(b"weights after %d steps" % TOTAL)
print("checkpoint stand-in done", flush=True)
