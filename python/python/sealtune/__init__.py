"""sealtune: helpers for training scripts run by a sealtune worker, or standalone on a laptop.

The same module works in both places:

* inside a sealtune worker (embedded in its executor), ``report()`` and friends reach the running task
  directly, and ``seal_model()`` streams the trained tensors into the sealing stream with the task's
  model key, so no plaintext weights are written anywhere;
* standalone (``pip install sealtune``), events go to the file named by ``$SEALTUNE_EVENTS_FILE`` (one
  JSON line each) or else to stdout, and ``seal_model()`` saves the model normally and says so.

Scripts should keep running under 0G's own execution image, where this module is absent::

    try:
        import sealtune
    except ImportError:
        sealtune = None
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from sealtune import _native
from sealtune._native import SealtuneError, TokenCounter, __version__

__all__ = [
    "SealtuneError",
    "TaskContext",
    "TokenCounter",
    "SealtuneCallback",
    "__version__",
    "count_tokens",
    "is_live",
    "log",
    "metric",
    "report",
    "seal_model",
    "task_context",
]

EVENTS_FILE_ENV = "SEALTUNE_EVENTS_FILE"


def is_live() -> bool:
    """Whether this process is a sealtune worker's executor (events reach the task directly)."""
    return _native.live_task() is not None


# --------------------------------------------------------------------------------------------------
# Task context


@dataclass(frozen=True)
class TaskContext:
    """The task as the script sees it: the 0G argv contract's paths and the parsed training params."""

    data_path: Path
    model_path: Path
    config_path: Path
    output_dir: Path
    params: dict[str, Any] = field(default_factory=dict)
    live: bool = False
    sealing: bool = False


def _parse_argv(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False)
    for name in ("--data_path", "--model_path", "--config_path", "--output_dir"):
        parser.add_argument(name, required=True)
    args, _unknown = parser.parse_known_args(argv)
    return args


def task_context(argv: list[str] | None = None) -> TaskContext:
    """The task's paths and training params.

    Inside a worker they come from the worker; otherwise from ``argv`` (default ``sys.argv[1:]``) in
    0G's contract: ``--data_path --model_path --config_path --output_dir``. The params are the JSON
    object at ``config_path`` (empty when the file does not exist).
    """
    live = _native.live_task()
    if live is not None:
        paths = {k: Path(live[k]) for k in ("data_path", "model_path", "config_path", "output_dir")}
        sealing = bool(live["sealing"])
    else:
        try:
            args = _parse_argv(sys.argv[1:] if argv is None else list(argv))
        except SystemExit as exc:
            raise SealtuneError(
                "expected 0G's arguments --data_path --model_path --config_path --output_dir"
            ) from exc
        paths = {
            "data_path": Path(args.data_path),
            "model_path": Path(args.model_path),
            "config_path": Path(args.config_path),
            "output_dir": Path(args.output_dir),
        }
        sealing = False
    params: dict[str, Any] = {}
    if paths["config_path"].is_file():
        with open(paths["config_path"], encoding="utf-8") as f:
            loaded = json.load(f)
        if not isinstance(loaded, dict):
            raise SealtuneError(f"{paths['config_path']}: training params must be a JSON object")
        params = loaded
    return TaskContext(params=params, live=live is not None, sealing=sealing, **paths)


# --------------------------------------------------------------------------------------------------
# Events


def _finite(name: str, value: Any, step: int | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SealtuneError(f"{name} must be a number, got {type(value).__name__}") from None
    if not math.isfinite(number):
        _native.emit_log(f"{name} is {number} at step {step}; not reported", "warn")
        return None
    return number


def report(
    step: int,
    total: int | None = None,
    loss: float | None = None,
    **metrics: float,
) -> None:
    """Report a training step; ``learning_rate`` and ``epoch`` among ``metrics`` get their own fields.

    Non-finite numbers (a diverging loss) are left out with a warning in the task log instead of failing
    the script.
    """
    if step < 0:
        raise SealtuneError("step must be >= 0")
    lr = _finite("learning_rate", metrics.pop("learning_rate", None), step)
    epoch = _finite("epoch", metrics.pop("epoch", None), step)
    extra = {}
    for name, value in metrics.items():
        number = _finite(name, value, step)
        if number is not None:
            extra[name] = number
    _native.emit_progress(
        int(step),
        None if total is None else int(total),
        _finite("loss", loss, step),
        lr,
        epoch,
        extra or None,
    )


def log(message: str, level: str = "info") -> None:
    """Write a line to the task log (``debug``, ``info``, ``warn`` or ``error``)."""
    _native.emit_log(str(message), level)


def metric(name: str, value: float, step: int | None = None) -> None:
    """Report one named value (an eval loss, an accuracy...)."""
    number = _finite(name, value, step)
    if number is not None:
        _native.emit_metric(name, number, step)


def _make_callback_class() -> type:
    from transformers import TrainerCallback

    class SealtuneCallback(TrainerCallback):
        """A transformers ``TrainerCallback`` that reports steps, loss, learning rate and eval metrics.

        Progress is reported with every ``Trainer`` log (set ``logging_steps``), and between logs at
        most once every ``min_interval`` seconds so long steps still show progress.
        """

        def __init__(self, min_interval: float = 5.0) -> None:
            self.min_interval = min_interval
            self._last = 0.0

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            now = time.monotonic()
            if now - self._last >= self.min_interval:
                self._last = now
                report(step=state.global_step, total=state.max_steps or None, epoch=state.epoch)

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            logs = dict(logs or {})
            step = state.global_step
            if "loss" in logs:
                self._last = time.monotonic()
                loss = logs.pop("loss")
                extra = {
                    k: v
                    for k, v in logs.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and not k.startswith("eval_")
                }
                report(step=step, total=state.max_steps or None, loss=loss, **extra)
                return
            for name, value in logs.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and name != "epoch":
                    metric(name, value, step)

    return SealtuneCallback


_LAZY: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    # SealtuneCallback needs transformers: build it on first use so `import sealtune` stays light.
    if name == "SealtuneCallback":
        if name not in _LAZY:
            _LAZY[name] = _make_callback_class()
        return _LAZY[name]
    if name in _LAZY_FACTORIES:
        if name not in _LAZY:
            _LAZY[name] = _LAZY_FACTORIES[name]()
        return _LAZY[name]
    raise AttributeError(f"module 'sealtune' has no attribute {name!r}")


# --------------------------------------------------------------------------------------------------
# Token counting


def _counter(tokenizer: Any) -> TokenCounter:
    if isinstance(tokenizer, TokenCounter):
        return tokenizer
    if isinstance(tokenizer, (str, os.PathLike)):
        path = Path(tokenizer)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise SealtuneError(f"{path}: no tokenizer.json (token counting needs a fast tokenizer)")
        return TokenCounter(str(path))
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise SealtuneError(
            "count_tokens needs a fast (Rust) tokenizer, a tokenizer.json path or a model directory"
        )
    return TokenCounter.from_json(backend.to_str())


def _records_as_json(dataset: Any) -> Iterator[str]:
    if isinstance(dataset, Mapping):
        if "train" not in dataset:
            raise SealtuneError("a DatasetDict (or mapping of splits) must have a `train` split")
        dataset = dataset["train"]  # 0G counts the train split
    for row in dataset:
        if not isinstance(row, Mapping):
            raise SealtuneError(f"dataset rows must be mappings, got {type(row).__name__}")
        # Columns absent from a row come back as None from a mixed-shape Dataset: drop them.
        yield json.dumps({k: v for k, v in row.items() if v is not None})


def count_tokens(dataset: Any, tokenizer: Any, rule: str = "official", batch: int = 4096) -> int:
    """Tokens of a dataset under ``protocol``'s rule, the one the fee uses.

    ``rule="official"`` counts ``text``, ``input`` and ``output`` (0G's counter, after the ``messages``
    conversion); ``"with_instruction"`` adds ``instruction``. ``dataset`` is a JSONL or zip path, a
    ``datasets.Dataset`` / ``DatasetDict`` (its ``train`` split), or an iterable of dicts. ``tokenizer``
    is a fast tokenizer, a ``tokenizer.json`` path or a model directory, or a ``TokenCounter``.
    """
    counter = _counter(tokenizer)
    if isinstance(dataset, (str, os.PathLike)):
        _records, tokens = counter.count_file(str(dataset), rule)
        return int(tokens)
    total = 0
    chunk: list[str] = []
    done = 0
    for line in _records_as_json(dataset):
        chunk.append(line)
        if len(chunk) >= batch:
            total += _count_chunk(counter, chunk, rule, done)
            done += len(chunk)
            chunk = []
    if chunk:
        total += _count_chunk(counter, chunk, rule, done)
        done += len(chunk)
    if done == 0:
        raise SealtuneError("the dataset has no record")
    return total


def _count_chunk(counter: TokenCounter, chunk: list[str], rule: str, offset: int) -> int:
    try:
        return int(counter.count_json_records(chunk, rule))
    except SealtuneError as exc:
        # Renumber "record N" to the position in the whole dataset.
        msg = str(exc)
        if msg.startswith("record ") and offset:
            num, _, rest = msg[len("record "):].partition(":")
            if num.isdigit():
                msg = f"record {int(num) + offset}:{rest}"
        raise SealtuneError(msg) from None


# --------------------------------------------------------------------------------------------------
# Sealing

_SAFETENSORS_DTYPES = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "uint16": "U16",
    "uint32": "U32",
    "uint64": "U64",
    "bool": "BOOL",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
}


def _tensor_specs(state: Mapping[str, Any]) -> list[tuple[str, str, list[int]]]:
    specs = []
    for name, t in state.items():
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in _SAFETENSORS_DTYPES:
            raise SealtuneError(f"tensor {name!r}: dtype {dtype} has no safetensors equivalent")
        specs.append((name, _SAFETENSORS_DTYPES[dtype], [int(d) for d in t.shape]))
    return specs


def _tensor_buffers(state: Mapping[str, Any]) -> Iterator[Any]:
    """Each tensor's bytes, in order, as a buffer sharing the CPU tensor's memory (one device-to-host
    copy of one tensor at a time for GPU tensors)."""
    import torch

    via_tch = getattr(_native, "TORCH_FEATURE", False)
    for t in state.values():
        t = t.detach()
        if via_tch:
            yield t  # read in place by tch in the worker's build
            continue
        if t.device.type != "cpu":
            t = t.to("cpu")
        t = t.contiguous().reshape(-1)
        if t.numel() == 0:
            yield b""
            continue
        yield memoryview(t.view(torch.uint8).numpy())


def _dedupe_shared(state: Mapping[str, Any]) -> dict[str, Any]:
    """Drop tensors sharing storage with an earlier one (tied embeddings): safetensors stores each once,
    transformers re-ties them on load."""
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    out = {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape)) if t.device.type != "meta" else None
        if key is not None and key in seen:
            continue
        if key is not None:
            seen.add(key)
        out[name] = t
    return out


def _model_files(model: Any) -> tuple[str, dict[str, Any], dict[str, bytes]]:
    """(safetensors file name, tensors, small files) of a PEFT model, a transformers model, an
    ``nn.Module`` or a dict of tensors."""
    if isinstance(model, Mapping):
        return "model.safetensors", dict(model), {}
    peft_config = getattr(model, "peft_config", None)
    if isinstance(peft_config, Mapping) and peft_config:
        from peft.utils import get_peft_model_state_dict

        adapter = getattr(model, "active_adapter", None) or next(iter(peft_config))
        if not isinstance(adapter, str):
            adapter = adapter[0]
        state = get_peft_model_state_dict(model, adapter_name=adapter)
        cfg = peft_config[adapter].to_dict()
        cfg = {k: (sorted(v) if isinstance(v, set) else v) for k, v in cfg.items()}
        cfg["inference_mode"] = True
        files = {"adapter_config.json": json.dumps(cfg, indent=2, sort_keys=True).encode()}
        return "adapter_model.safetensors", dict(state), files
    files: dict[str, bytes] = {}
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_json_string"):
        files["config.json"] = config.to_json_string().encode()
    gen = getattr(model, "generation_config", None)
    if gen is not None and hasattr(gen, "to_json_string"):
        files["generation_config.json"] = gen.to_json_string().encode()
    return "model.safetensors", _dedupe_shared(model.state_dict()), files


def _file_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, os.PathLike):
        return Path(value).read_bytes()
    raise SealtuneError(f"extra file content must be bytes, str or a path, got {type(value).__name__}")


def _rank() -> int:
    """This process's rank in a torchrun-style world (``RANK``); 0 when it runs alone."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def seal_model(
    model: Any,
    output_dir: str | os.PathLike | None = None,
    extra_files: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Deliver the trained model.

    Inside a worker that seals in the script, the model's tensors are written as safetensors straight
    into the sealing stream with the task's model key (zip entries ``output_model/...``, AES-256-GCM
    chunks whose tags go to the worker), so no plaintext weights are written anywhere; a PEFT model is
    delivered as its adapter (``adapter_model.safetensors`` + ``adapter_config.json``). Otherwise the
    model is saved normally to ``output_dir`` (default: the task's ``--output_dir``) with
    ``save_pretrained`` (or safetensors for a dict of tensors), and a log line says it is unencrypted.

    ``extra_files`` maps relative names to bytes, text or paths of small files to deliver alongside.
    Returns what was done: ``{"sealed": bool, ...}``.

    In a data-parallel run (torchrun's ``RANK`` set and not 0) only rank 0 delivers: on any other
    rank nothing is sealed or saved, and ``{"sealed": False, "skipped": True, "rank": r}`` is returned.
    """
    rank = _rank()
    if rank != 0:
        return {"sealed": False, "skipped": True, "rank": rank}
    live = _native.live_task()
    if live is not None and live["sealing"]:
        name, state, files = _model_files(model)
        for extra, value in (extra_files or {}).items():
            files[extra] = _file_bytes(value)
        stream = _native.SealStream.live()
        try:
            for fname, data in files.items():
                stream.add_file(fname, data)
            stream.add_safetensors(name, _tensor_specs(state), _tensor_buffers(state), [("format", "pt")])
            result = stream.finish()
        except BaseException:
            stream.abort()
            raise
        log(f"sealed the model: {result['files']} files, {result['zip_len']} bytes in {result['chunks']} chunks")
        return {"sealed": True, **result}

    if output_dir is None:
        output_dir = live["output_dir"] if live is not None else task_context().output_dir
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(model, Mapping):
        from safetensors.torch import save_file

        save_file(dict(model), str(out / "model.safetensors"), metadata={"format": "pt"})
    else:
        model.save_pretrained(str(out))
    for extra, value in (extra_files or {}).items():
        target = out / extra
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_file_bytes(value))
    where = "inside the worker, which seals the output directory itself" if live is not None else (
        "standalone: not running inside a sealtune worker, so the model is NOT encrypted"
    )
    log(f"saved the model to {out} ({where})", "info" if live is not None else "warn")
    return {"sealed": False, "path": str(out)}


# --------------------------------------------------------------------------------------------------
# Sealed checkpoints (docs/provider-guide.md "Checkpoints")

CHECKPOINT_DIR_ENV = "SEALTUNE_CHECKPOINT_DIR"
CHECKPOINT_STEPS_ENV = "SEALTUNE_CHECKPOINT_STEPS"
RESUME_FROM_ENV = "SEALTUNE_RESUME_FROM"


@dataclass(frozen=True)
class Checkpointing:
    """Where and how often the trainer checkpoints inside a worker that seals checkpoints.

    ``dir`` is the task's checkpoint scratch directory (tmpfs, readable by this task only): give it to
    ``TrainingArguments(output_dir=...)`` with ``save_strategy="steps"``, ``save_steps=every``, and add
    ``CheckpointCallback()``; the worker seals every ``checkpoint-<step>`` as soon as the trainer wrote
    it and deletes the plaintext. ``resume_from`` is the unsealed ``checkpoint-<step>`` of an earlier,
    interrupted run (give it to ``trainer.train(resume_from_checkpoint=...)``), or ``None``.
    """

    dir: str
    every: int
    resume_from: str | None


def checkpointing() -> Checkpointing | None:
    """The task's checkpoint settings, or ``None`` when the worker does not checkpoint this model
    (or outside a worker)."""
    directory = os.environ.get(CHECKPOINT_DIR_ENV)
    if not directory or not is_live():
        return None
    try:
        every = int(os.environ.get(CHECKPOINT_STEPS_ENV, "0"))
    except ValueError:
        return None
    if every <= 0:
        return None
    resume = os.environ.get(RESUME_FROM_ENV) or None
    if resume is not None and not os.path.isdir(resume):
        resume = None
    return Checkpointing(dir=directory, every=every, resume_from=resume)


def checkpoint_saved(step: int) -> None:
    """Tell the worker that ``checkpoint-<step>`` is complete in the checkpoint directory (rank 0 only:
    with several ranks the Trainer's files are written by rank 0, and the other ranks say nothing)."""
    if _rank() == 0:
        _native.emit_checkpoint(int(step))


def _make_checkpoint_callback_class() -> type:
    from transformers import TrainerCallback

    class CheckpointCallback(TrainerCallback):
        """A transformers ``TrainerCallback`` that hands every checkpoint the Trainer saved to the
        worker (``on_save`` runs after the whole ``checkpoint-<step>`` directory is written), and logs
        how long the step's save paused training."""

        def __init__(self) -> None:
            self._step_end = None

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            self._step_end = time.monotonic()

        def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
            if self._step_end is not None and _rank() == 0:
                took = (time.monotonic() - self._step_end) * 1000
                log(f"the trainer wrote checkpoint-{state.global_step} in {took:.0f} ms")
            checkpoint_saved(state.global_step)

    return CheckpointCallback


_LAZY_FACTORIES = {"CheckpointCallback": _make_checkpoint_callback_class}
__all__ += ["Checkpointing", "CheckpointCallback", "checkpoint_saved", "checkpointing"]
