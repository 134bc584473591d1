#!/usr/bin/env python3
"""sealtune's stock training script: LoRA fine-tuning of a causal language model.

Runs unchanged under 0G's execution contract::

    python lora_causal_lm.py --data_path DIR --model_path DIR --config_path FILE --output_dir DIR

* ``--data_path``: the dataset as 0G's setup prepares it: a ``DatasetDict`` saved with ``save_to_disk``
  whose ``train`` split holds records ``{instruction, input?, output}`` (chat records already converted:
  instruction = last user message, output = last assistant message), ``{messages}`` or ``{text}``.
  A folder of ``*.jsonl`` files is accepted too.
* ``--config_path``: the training params, exactly these keys (PROTOCOL.md §3), each optional:
  ``neftune_noise_alpha`` (0-10, default 0), ``num_train_epochs`` (integer 1-10, default 3),
  ``per_device_train_batch_size`` (integer 1-4, default 2), ``learning_rate`` (1e-5 to 1e-3 in decimal
  notation, default 0.0002), ``max_steps`` (-1 or a positive integer, default -1); and the optional
  LoRA options, at the top level or inside OPEA's ``lora_config`` object (not both): ``r`` (integer
  1-256, default 8), ``lora_alpha`` (integer 1-512, default 16), ``lora_dropout`` (0 <= d < 1, default
  0.05), ``target_modules`` (1-16 module names, default the attention projections the model has),
  and ``merge_adapter`` (boolean, default false). The worker has already checked them against the
  ranges the provider declares for the model; these are the ceilings every provider's ranges lie in.
* validation data (optional): a ``validation`` split of the saved dataset (the sealtune worker makes it
  from the zip's ``validation*.jsonl`` entries), or ``validation*.jsonl`` files in a JSONL folder. With
  it the script reports ``base_eval_loss`` / ``base_perplexity`` (the base model) and ``eval_loss`` /
  ``perplexity`` (the tuned model) through the ``sealtune`` module's metric events.
* evaluate mode (docs/PROTOCOL.md §10): when the config is ``{"evaluate": {"tuned_model_path": DIR}}``
  the script trains nothing: it reports, on every record of the dataset (its train and validation
  splits), the base model's ``base_eval_loss`` / ``base_perplexity`` and those of the delivered model
  in ``DIR`` (a PEFT adapter of the base, or a whole model) as ``eval_loss`` / ``perplexity``.
* ``--output_dir``: where the PEFT adapter is saved (``adapter_model.safetensors`` +
  ``adapter_config.json``), unless the script runs inside a sealtune worker that seals in the script:
  then ``sealtune.seal_model`` streams the adapter into the sealed deliverable and nothing is written.
  With ``merge_adapter`` the adapter is merged into the base weights (``merge_and_unload``) and the
  whole model is delivered the same way (``model.safetensors``, ``config.json``,
  ``generation_config.json`` and the base model's tokenizer files): it loads with plain
  ``transformers.AutoModelForCausalLM.from_pretrained``.

fp32 on CPU, bf16 on CUDA. No checkpoint is written (``save_strategy="no"``), unless the worker
seals checkpoints for this model (``sealtune.checkpointing()``, see ``checkpoint_settings``): then the
Trainer checkpoints every K steps into the task's tmpfs checkpoint directory, the worker seals each one
and deletes the plaintext, and a run interrupted by a worker restart resumes from the last one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
from pathlib import Path

try:  # present inside a sealtune worker or after `pip install sealtune`; absent in 0G's image
    import sealtune
except ImportError:
    sealtune = None

PARAMS = {
    # name: (kind, low, high, default)
    "neftune_noise_alpha": ("number", 0, 10, 0),
    "num_train_epochs": ("integer", 1, 10, 3),
    "per_device_train_batch_size": ("integer", 1, 4, 2),
    "learning_rate": ("decimal", 1e-5, 1e-3, 2e-4),
    "max_steps": ("steps", None, None, -1),
}
LORA_OPTIONS = {
    # name: (kind, low, high, default): the ceilings of PROTOCOL.md §3 (a provider declares narrower
    # ranges per model; the worker checks those before the script runs)
    "r": ("integer", 1, 256, 8),
    "lora_alpha": ("integer", 1, 512, 16),
    "lora_dropout": ("fraction", 0, 1, 0.05),
    "target_modules": ("modules", 1, 16, None),
}
LORA_CONFIG = "lora_config"  # OPEA's object for the LoRA options (seed 004)
MERGE_ADAPTER = "merge_adapter"
_MODULE_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
# The base model's tokenizer files delivered beside a merged model (those that exist).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)
MAX_LENGTH = 512
SEED = 42
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


class ParamError(ValueError):
    """A training parameter is missing, unknown or out of range."""


class _RawFloat(str):
    """A JSON number kept as its text, so decimal notation can be checked."""


def load_params(path: str | os.PathLike) -> dict:
    """Read and validate the training params (exact keys, types, ranges)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        raw = json.loads(text, parse_float=_RawFloat)
    except json.JSONDecodeError as exc:
        raise ParamError(f"training params are not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ParamError("training params must be a JSON object")
    allowed = set(PARAMS) | set(LORA_OPTIONS) | {LORA_CONFIG, MERGE_ADAPTER}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ParamError(f"unknown training params {unknown}; allowed: {sorted(allowed)}")
    params = {}
    for name, (kind, low, high, default) in PARAMS.items():
        value = raw.get(name, default)
        params[name] = _check(name, kind, low, high, value)
    params.update(_lora_options(raw))
    return params


def _lora_options(raw: dict) -> dict:
    """The LoRA options that were given (top level or ``lora_config``, never both) and
    ``merge_adapter``, each checked; absent ones are left out (their defaults apply)."""
    nested = raw.get(LORA_CONFIG, {})
    if not isinstance(nested, dict):
        raise ParamError(f"{LORA_CONFIG} must be an object of LoRA options {sorted(LORA_OPTIONS)}")
    unknown = sorted(set(nested) - set(LORA_OPTIONS))
    if unknown:
        raise ParamError(f"unknown {LORA_CONFIG} keys {unknown}; allowed: {sorted(LORA_OPTIONS)}")
    out = {}
    for name, (kind, low, high, _default) in LORA_OPTIONS.items():
        if name in raw and name in nested:
            raise ParamError(f"{name} is given both at the top level and inside {LORA_CONFIG}")
        if name in raw or name in nested:
            out[name] = _check_option(name, kind, low, high, raw[name] if name in raw else nested[name])
    if MERGE_ADAPTER in raw:
        if not isinstance(raw[MERGE_ADAPTER], bool):
            raise ParamError(f"{MERGE_ADAPTER} must be true or false, not {raw[MERGE_ADAPTER]!r}")
        out[MERGE_ADAPTER] = raw[MERGE_ADAPTER]
    return out


def _check_option(name, kind, low, high, value):
    if kind == "integer":
        return _check(name, kind, low, high, value)
    if kind == "fraction":
        if isinstance(value, bool) or not isinstance(value, (int, float, _RawFloat)):
            raise ParamError(f"{name} must be a number, not {value!r}")
        number = float(value)
        if not (math.isfinite(number) and low <= number < high):
            raise ParamError(f"{name} must be from {low} up to (not including) {high}, got {value}")
        return number
    names = value
    valid = (
        isinstance(names, list)
        and low <= len(names) <= high
        and all(isinstance(n, str) and _MODULE_NAME.fullmatch(n) for n in names)
        and len(set(names)) == len(names)
    )
    if not valid:
        raise ParamError(
            f"{name} must be {low} to {high} distinct module names of letters, digits and _, got {value!r}"
        )
    return list(names)


def lora_settings(params: dict, module_names: list[str]) -> dict:
    """``peft.LoraConfig`` arguments: the options given, else their defaults. Named target modules
    must exist in the model; by default the attention projections it has (else ``all-linear``)."""
    def has(target: str) -> bool:
        return any(n == target or n.endswith("." + target) for n in module_names)

    targets = params.get("target_modules")
    if targets is None:
        targets = [t for t in LORA_TARGETS if has(t)] or "all-linear"
    else:
        missing = [t for t in targets if not has(t)]
        if missing:
            raise ParamError(f"target_modules {missing} are not modules of this model")
    return {
        "r": params.get("r", LORA_OPTIONS["r"][3]),
        "lora_alpha": params.get("lora_alpha", LORA_OPTIONS["lora_alpha"][3]),
        "lora_dropout": params.get("lora_dropout", LORA_OPTIONS["lora_dropout"][3]),
        "target_modules": targets,
        "task_type": "CAUSAL_LM",
    }


def tokenizer_files(model_path: str | os.PathLike) -> dict[str, Path]:
    """The base model's tokenizer files, by name: delivered beside a merged model so it loads
    (and tokenizes) with plain ``transformers`` (copied as they are: no file is written to get them)."""
    base = Path(model_path)
    return {name: base / name for name in TOKENIZER_FILES if (base / name).is_file()}


def _check(name, kind, low, high, value):
    if isinstance(value, bool):
        raise ParamError(f"{name} must be a number, not a boolean")
    if kind == "decimal":
        text = str(value)
        if isinstance(value, (_RawFloat, str)) and ("e" in text.lower()):
            raise ParamError(f"{name} must be written in decimal notation (e.g. 0.0002), not {text}")
        try:
            number = float(text)
        except ValueError:
            raise ParamError(f"{name} must be a number, not {value!r}") from None
        if not (math.isfinite(number) and low <= number <= high):
            raise ParamError(f"{name} must be between 0.00001 and 0.001, got {text}")
        return number
    if isinstance(value, _RawFloat):
        number = float(value)
    elif isinstance(value, (int, float)):
        number = value
    else:
        raise ParamError(f"{name} must be a number, not {value!r}")
    if kind in ("integer", "steps"):
        if float(number) != int(number):
            raise ParamError(f"{name} must be an integer, got {value}")
        number = int(number)
        if kind == "steps":
            if number == -1 or number > 0:
                return number
            raise ParamError(f"{name} must be -1 or a positive integer, got {number}")
    if not (low <= number <= high):
        raise ParamError(f"{name} must be between {low} and {high}, got {value}")
    return number


def _is_validation_file(path: Path) -> bool:
    """A ``validation*.jsonl`` file: validation records, not trained on (PROTOCOL.md §9)."""
    return path.name.lower().startswith("validation")


def load_train_split(data_path: str):
    """The train split as 0G prepares it (a saved DatasetDict), or JSONL files in the folder."""
    import datasets

    path = Path(data_path)
    if (path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists():
        loaded = datasets.load_from_disk(str(path))
        train = loaded["train"] if isinstance(loaded, datasets.DatasetDict) else loaded
    else:
        files = sorted(str(p) for p in path.rglob("*.jsonl") if not _is_validation_file(p))
        if not files:
            raise ValueError(f"{data_path}: neither a saved dataset nor JSONL files")
        train = datasets.load_dataset("json", data_files=files, split="train")
    if len(train) == 0:
        raise ValueError("the training split is empty")
    return train


def to_chat(record: dict) -> list[dict] | str:
    """One record as chat messages (instruction shapes) or plain text."""
    text = record.get("text")
    if text:
        return text
    messages = record.get("messages")
    if messages:
        users = [m["content"] for m in messages if m.get("role") == "user"]
        assistants = [m["content"] for m in messages if m.get("role") == "assistant"]
        record = {"instruction": users[-1] if users else "", "output": assistants[-1] if assistants else ""}
    prompt = record.get("instruction") or ""
    if record.get("input"):
        prompt = f"{prompt}\n\n{record['input']}"
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": record.get("output") or ""}]


def render(tokenizer, record: dict) -> str:
    chat = to_chat(record)
    if isinstance(chat, str):
        return chat + (tokenizer.eos_token or "")
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(chat, tokenize=False)
    return f"{chat[0]['content']}\n\n{chat[1]['content']}{tokenizer.eos_token or ''}"


def prompt_length(tokenizer, record: dict) -> int:
    """Tokens of an instruction record's prompt (the chat up to the assistant's turn): not trained on.
    0 for a ``text`` record (all of it is trained on)."""
    chat = to_chat(record)
    if isinstance(chat, str):
        return 0
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template(chat[:1], tokenize=False, add_generation_prompt=True)
    else:
        prompt = f"{chat[0]['content']}\n\n"
    return len(tokenizer(prompt, truncation=True, max_length=MAX_LENGTH)["input_ids"])


def tokenize_for_training(tokenizer, record: dict) -> dict:
    """One record tokenized with labels: the answer's tokens only for instruction records (the
    prompt's labels are -100), every token for ``text`` records."""
    encoded = tokenizer(render(tokenizer, record), truncation=True, max_length=MAX_LENGTH)
    labels = list(encoded["input_ids"])
    masked = min(prompt_length(tokenizer, record), len(labels))
    labels[:masked] = [-100] * masked
    encoded["labels"] = labels
    return encoded


# --------------------------------------------------------------------------------------------------
# Evaluation on the validation split (seed 003's definition; PROTOCOL.md §9)

EVAL_BATCH_SIZE = 4


def load_validation_split(data_path: str):
    """The ``validation`` split the worker prepared (from the zip's ``validation*.jsonl`` entries), or
    those files in a JSONL folder; ``None`` when the task has no validation data."""
    import datasets

    path = Path(data_path)
    if (path / "dataset_dict.json").exists():
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict) and "validation" in loaded:
            split = loaded["validation"]
            return split if len(split) else None
        return None
    files = sorted(str(p) for p in path.rglob("*.jsonl") if _is_validation_file(p))
    if not files:
        return None
    split = datasets.load_dataset("json", data_files=files, split="train")
    return split if len(split) else None


def eval_loss(model, tokenizer, records) -> float:
    """Mean cross-entropy over the shifted labels of every record, padding (-100) excluded: the sum of
    the token losses over the number of predicted tokens, so the batch size does not change it."""
    import torch

    texts = [render(tokenizer, record) for record in records]
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    device = next(model.parameters()).device
    with torch.no_grad():
        for start in range(0, len(texts), EVAL_BATCH_SIZE):
            batch = tokenizer(
                texts[start : start + EVAL_BATCH_SIZE],
                truncation=True,
                max_length=MAX_LENGTH,
                padding=True,
                return_tensors="pt",
            ).to(device)
            labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            shift_logits = logits[:, :-1, :].float()
            shift_labels = labels[:, 1:]
            losses = torch.nn.functional.cross_entropy(
                shift_logits.reshape(-1, shift_logits.size(-1)),
                shift_labels.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            total += float(losses)
            count += int((shift_labels != -100).sum())
    if was_training:
        model.train()
    if count == 0:
        raise ValueError("the validation split has no tokens to predict")
    return total / count


def report_eval(prefix: str, loss: float) -> None:
    """Report ``{prefix}eval_loss`` and ``{prefix}perplexity`` (``exp`` of it) as metric events."""
    perplexity = math.exp(loss) if loss < 700 else float("inf")
    print(f"{prefix}eval_loss {loss:.4f}, {prefix}perplexity {perplexity:.3f}", flush=True)
    if sealtune is not None:
        sealtune.metric(f"{prefix}eval_loss", loss)
        sealtune.metric(f"{prefix}perplexity", perplexity)


def evaluation_spec(path: str | os.PathLike) -> dict | None:
    """The evaluate mode's settings when the config asks for it, else ``None``."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return raw.get("evaluate") if isinstance(raw, dict) and isinstance(raw.get("evaluate"), dict) else None


def evaluate(args, spec: dict) -> int:
    """Evaluate mode: the base model's and the delivered model's eval loss on every record."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    tuned = Path(spec["tuned_model_path"])
    tokenizer = AutoTokenizer.from_pretrained(args.model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    records = list(load_train_split(args.data_path)) + list(load_validation_split(args.data_path) or [])
    model = AutoModelForCausalLM.from_pretrained(args.model_path, dtype=dtype)
    report_eval("base_", eval_loss(model, tokenizer, records))
    if (tuned / "adapter_config.json").exists():
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(tuned))
    else:
        model = AutoModelForCausalLM.from_pretrained(str(tuned), dtype=dtype)
    report_eval("", eval_loss(model, tokenizer, records))
    return 0


def checkpoint_settings():
    """(TrainingArguments overrides, callbacks, resume_from_checkpoint) for sealed checkpoints: none
    outside a worker that checkpoints this model. Only rank 0 writes the model and optimizer files
    (the Trainer's rule); every rank reads the same directory when it resumes."""
    settings = sealtune.checkpointing() if sealtune is not None else None
    if settings is None:
        return {"save_strategy": "no"}, [], None
    overrides = {
        "output_dir": settings.dir,
        "save_strategy": "steps",
        "save_steps": settings.every,
        "save_total_limit": None,  # the worker deletes each one once sealed
    }
    return overrides, [sealtune.CheckpointCallback()], settings.resume_from


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_path", required=True)
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--config_path", required=True)
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args(argv)

    spec = evaluation_spec(args.config_path)
    if spec is not None:
        return evaluate(args, spec)
    params = load_params(args.config_path)
    print(f"training params: {json.dumps(params, sort_keys=True)}", flush=True)

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
    )

    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()

    transformers.set_seed(SEED)  # the LoRA init too, not only the Trainer's shuffling
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(args.model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(args.model_path, dtype=dtype)
    validation = load_validation_split(args.data_path)
    if validation is not None:
        report_eval("base_", eval_loss(model, tokenizer, validation))
    lora = LoraConfig(**lora_settings(params, [n for n, _ in model.named_modules()]))
    model = get_peft_model(model, lora)

    train = load_train_split(args.data_path)

    train = train.map(
        lambda record: tokenize_for_training(tokenizer, record),
        remove_columns=train.column_names,
        keep_in_memory=True,
    )

    checkpoint_overrides, checkpoint_callbacks, resume_from = checkpoint_settings()
    training_args = TrainingArguments(
        **{"output_dir": args.output_dir, **checkpoint_overrides},
        num_train_epochs=params["num_train_epochs"],
        per_device_train_batch_size=params["per_device_train_batch_size"],
        learning_rate=params["learning_rate"],
        max_steps=params["max_steps"],
        neftune_noise_alpha=params["neftune_noise_alpha"] or None,
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
        bf16=cuda,
        use_cpu=not cuda,
        dataloader_num_workers=0,
        seed=SEED,
    )
    callbacks = [sealtune.SealtuneCallback()] if sealtune is not None else []
    callbacks += checkpoint_callbacks
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        callbacks=callbacks,
    )
    if resume_from is not None:
        print(f"resuming from {os.path.basename(resume_from)}", flush=True)
    result = trainer.train(resume_from_checkpoint=resume_from)
    print(f"training done: {result.global_step} steps, loss {result.training_loss:.4f}", flush=True)
    if validation is not None:
        report_eval("", eval_loss(model, tokenizer, validation))

    deliver(model, params, args)
    return 0


def deliver(model, params: dict, args) -> None:
    """Seal (inside a sealtune worker) or save the adapter, or with ``merge_adapter`` the base model
    with the adapter merged in plus the base tokenizer files."""
    what, extra = "adapter", {}
    if params.get(MERGE_ADAPTER):
        model = model.merge_and_unload()  # in place, in memory: nothing is written
        what, extra = "merged model", tokenizer_files(args.model_path)
    if sealtune is not None:
        done = sealtune.seal_model(model, output_dir=args.output_dir, extra_files=extra)
        if done["sealed"]:
            print(f"{what} sealed in the worker", flush=True)
        elif not done.get("skipped"):  # skipped: not rank 0 of a data-parallel run
            print(f"{what} saved to {done['path']}", flush=True)
        return
    model.save_pretrained(args.output_dir)
    for name, path in extra.items():
        shutil.copyfile(path, Path(args.output_dir) / name)
    print(f"{what} saved to {args.output_dir}", flush=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ParamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise
