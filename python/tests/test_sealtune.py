"""The sealtune module standalone (as `pip install sealtune` gives it): task context, events to a file or
stdout, token counting against transformers, the sealing stream, and standalone seal_model."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

import sealtune
from sealtune import _native

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"

RECORDS = [
    {"instruction": "Add the numbers", "input": "1 2", "output": "3"},
    {"instruction": "Say hi", "output": "Hello there, friend!"},
    {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "u1"},
                  {"role": "assistant", "content": "first answer"}, {"role": "user", "content": "u2"},
                  {"role": "assistant", "content": "the last answer counts"}]},
    {"text": "Plain text with ünïcödé and emoji 🎉."},
    {"instruction": "empty input", "input": "", "output": ""},
]


def test_the_wheel_is_what_is_imported():
    assert sealtune.__version__
    if os.environ.get("SEALTUNE_EXPECT_WHEEL") == "1":
        assert "site-packages" in sealtune.__file__, sealtune.__file__
    assert not sealtune.is_live()
    assert _native.TORCH_FEATURE is False  # the pip wheel carries no tch


def test_task_context_parses_0g_argv_and_params(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"max_steps": 4, "learning_rate": 0.0002}))
    ctx = sealtune.task_context(
        ["--data_path", "d", "--model_path", "m", "--config_path", str(cfg), "--output_dir", "o", "--extra", "x"]
    )
    assert (ctx.data_path, ctx.model_path, ctx.output_dir) == (Path("d"), Path("m"), Path("o"))
    assert ctx.params == {"max_steps": 4, "learning_rate": 0.0002}
    assert not ctx.live and not ctx.sealing
    with pytest.raises(sealtune.SealtuneError, match="--data_path"):
        sealtune.task_context(["--model_path", "m"])
    cfg.write_text("[1, 2]")
    with pytest.raises(sealtune.SealtuneError, match="JSON object"):
        sealtune.task_context(["--data_path", "d", "--model_path", "m", "--config_path", str(cfg), "--output_dir", "o"])


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_events_go_to_the_file_named_by_the_env(tmp_path, monkeypatch):
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv("SEALTUNE_EVENTS_FILE", str(events))
    sealtune.report(step=1, total=10, loss=2.5, learning_rate=1e-4, epoch=0.1, grad_norm=1.5)
    sealtune.report(step=2, loss=math.nan)
    sealtune.metric("eval_loss", 0.75, step=2)
    sealtune.log("hello", "warn")
    got = read_events(events)
    assert got[0] == {"v": 1, "type": "progress", "step": 1, "total": 10, "loss": 2.5,
                      "learning_rate": 1e-4, "epoch": 0.1, "metrics": {"grad_norm": 1.5}}
    # A NaN loss is left out with a warning instead of failing the script.
    assert got[1]["type"] == "log" and "loss is nan" in got[1]["message"]
    assert got[2] == {"v": 1, "type": "progress", "step": 2}
    assert got[3] == {"v": 1, "type": "metric", "name": "eval_loss", "value": 0.75, "step": 2}
    assert got[4] == {"v": 1, "type": "log", "level": "warn", "message": "hello"}


def test_events_go_to_stdout_without_the_env(capsys, monkeypatch):
    monkeypatch.delenv("SEALTUNE_EVENTS_FILE", raising=False)
    sealtune.report(step=3)
    out = capsys.readouterr().out
    assert json.loads(out) == {"v": 1, "type": "progress", "step": 3}


def test_bad_event_arguments_are_refused():
    with pytest.raises(ValueError, match="log level"):
        sealtune.log("x", "loud")
    with pytest.raises(sealtune.SealtuneError, match="must be a number"):
        sealtune.report(step=1, loss="low")
    with pytest.raises(sealtune.SealtuneError):
        sealtune.report(step=-1)


def test_callback_reports_steps_loss_lr_and_eval_metrics(tmp_path, monkeypatch):
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv("SEALTUNE_EVENTS_FILE", str(events))
    cb = sealtune.SealtuneCallback(min_interval=3600)
    state = SimpleNamespace(global_step=5, max_steps=20, epoch=0.5)
    cb.on_log(None, state, None, logs={"loss": 1.25, "learning_rate": 5e-5, "epoch": 0.5, "grad_norm": 0.9})
    cb.on_log(None, state, None, logs={"eval_loss": 1.5, "eval_runtime": 2.0, "epoch": 0.5})
    got = read_events(events)
    assert got[0] == {"v": 1, "type": "progress", "step": 5, "total": 20, "loss": 1.25,
                      "learning_rate": 5e-5, "epoch": 0.5, "metrics": {"grad_norm": 0.9}}
    assert {e["name"]: e["value"] for e in got[1:]} == {"eval_loss": 1.5, "eval_runtime": 2.0}
    from transformers import TrainerCallback

    assert isinstance(cb, TrainerCallback)


# ------------------------------------------------------------------------------------------------
# Token counting


def official_python_count(tokenizer, records, with_instruction=False) -> int:
    """0G's counter: AutoTokenizer.encode per field (text, input, output) after the messages conversion."""
    total = 0
    for r in records:
        if "messages" in r:
            users = [m["content"] for m in r["messages"] if m["role"] == "user"]
            assistants = [m["content"] for m in r["messages"] if m["role"] == "assistant"]
            r = {"instruction": users[-1], "output": assistants[-1]}
        fields = ["text", "input", "output"] + (["instruction"] if with_instruction else [])
        total += sum(len(tokenizer.encode(r[f])) for f in fields if f in r)
    return total


@pytest.mark.parametrize("repo", [SMOLLM2, MINILM])
def test_count_tokens_matches_transformers(repo, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(repo)
    expected = official_python_count(tok, RECORDS)
    assert sealtune.count_tokens(RECORDS, tok) == expected
    assert sealtune.count_tokens(RECORDS, tok, rule="with_instruction") == official_python_count(
        tok, RECORDS, with_instruction=True
    )
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    model_dir = Path(tok.name_or_path)
    if not model_dir.is_dir():
        from huggingface_hub import snapshot_download

        model_dir = Path(snapshot_download(repo))
    assert sealtune.count_tokens(path, model_dir) == expected
    counter = sealtune.TokenCounter(str(model_dir / "tokenizer.json"))
    assert counter.count_file(str(path)) == (len(RECORDS), expected)


def test_count_tokens_of_a_0g_datasetdict(tmp_path):
    import datasets
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(SMOLLM2)
    flat = [r for r in RECORDS if "messages" not in r]
    path = tmp_path / "flat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in flat))
    # As 0G's setup builds it; mixed shapes give None columns.
    train = datasets.Dataset.from_json(str(path), cache_dir=str(tmp_path / "cache"))
    dd = datasets.DatasetDict({"train": train})
    assert sealtune.count_tokens(dd, tok) == official_python_count(tok, flat)


def test_bad_records_are_named(tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(SMOLLM2)
    bad = RECORDS[:2] + [{"instruction": "no output"}]
    with pytest.raises(sealtune.SealtuneError, match=r"record 3: .*output"):
        sealtune.count_tokens(bad, tok)
    with pytest.raises(sealtune.SealtuneError, match="record 5"):
        sealtune.count_tokens(RECORDS[:4] + [{"text": 1}], tok, batch=2)
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"\n')
    with pytest.raises(sealtune.SealtuneError, match="line 2"):
        sealtune.count_tokens(path, tok)
    big = tmp_path / "big.jsonl"
    big.write_text('{"text": "a"}\n{"text": "' + "x" * 200 + '"}\n')
    counter = sealtune.TokenCounter.from_json(tok.backend_tokenizer.to_str())
    with pytest.raises(sealtune.SealtuneError, match="line 2: line longer than 100 bytes"):
        counter.count_file(str(big), max_line_bytes=100)
    with pytest.raises(sealtune.SealtuneError, match="no record"):
        sealtune.count_tokens([], tok)
    with pytest.raises(ValueError, match="rule"):
        sealtune.count_tokens(RECORDS, tok, rule="mine")


# ------------------------------------------------------------------------------------------------
# Sealing


def tensors():
    import torch

    return {
        "f32": torch.arange(12, dtype=torch.float32).reshape(3, 4),
        "bf16": torch.ones(5, dtype=torch.bfloat16),
        "i64": torch.tensor([1, 2, 3]),
        "flag": torch.tensor([True, False]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
        "strided": torch.arange(16.0).reshape(4, 4).t(),  # not contiguous: copied by .contiguous()
    }


def test_seal_stream_layout_and_safetensors_bytes(tmp_path):
    import torch
    from safetensors.torch import save

    state = tensors()
    specs = sealtune._tensor_specs(state)
    assert specs[1] == ("bf16", "BF16", [5])
    path = tmp_path / "model.sealed"
    stream = _native.SealStream(str(path), "11" * 32, chunk_len=1000)
    stream.add_file("adapter_config.json", b'{"r": 8}')
    stream.add_safetensors("adapter_model.safetensors", specs, sealtune._tensor_buffers(state), [("format", "pt")])
    result = stream.finish()
    assert result["files"] == 2
    assert result["chunks"] == -(-result["zip_len"] // 1000)
    assert result["file_len"] == path.stat().st_size == 77 + result["zip_len"] + 16 * result["chunks"]
    # The zip holds the tensors' bytes: at least the safetensors payload.
    assert result["zip_len"] > len(save({k: v.contiguous() for k, v in state.items()}))
    with pytest.raises(sealtune.SealtuneError, match="finished"):
        stream.add_file("late", b"x")


def test_seal_stream_refuses_bad_input_and_leaves_no_file(tmp_path):
    import torch

    path = tmp_path / "model.sealed"
    stream = _native.SealStream(str(path), "22" * 32)
    state = {"w": torch.ones(4)}
    with pytest.raises(ValueError, match="buffer holds 8 bytes"):
        stream.add_safetensors("m.safetensors", [("w", "F32", [4])], iter([b"\0" * 8]))
    assert not path.exists()  # aborted: the partial file is removed
    with pytest.raises(ValueError, match="64 hex"):
        _native.SealStream(str(path), "zz")
    stream = _native.SealStream(str(path), "22" * 32)
    with pytest.raises(ValueError, match="unknown safetensors dtype"):
        stream.add_safetensors("m.safetensors", [("w", "F31", [4])], sealtune._tensor_buffers(state))
    stream = _native.SealStream(str(path), "22" * 32)
    with pytest.raises(sealtune.SealtuneError, match="unsafe entry"):
        stream.add_file("../escape", b"x")
    with pytest.raises(sealtune.SealtuneError, match="not running inside a sealtune worker"):
        _native.SealStream.live()


def test_seal_model_standalone_saves_and_says_so(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file

    events = tmp_path / "events.jsonl"
    monkeypatch.setenv("SEALTUNE_EVENTS_FILE", str(events))
    out = tmp_path / "out"
    done = sealtune.seal_model({"w": torch.ones(2, 2)}, output_dir=out, extra_files={"notes/readme.txt": "hi"})
    assert done == {"sealed": False, "path": str(out)}
    assert torch.equal(load_file(out / "model.safetensors")["w"], torch.ones(2, 2))
    assert (out / "notes/readme.txt").read_text() == "hi"
    warn = read_events(events)[-1]
    assert warn["level"] == "warn" and "NOT encrypted" in warn["message"]


def test_seal_model_standalone_peft_adapter(tmp_path, monkeypatch):
    monkeypatch.setenv("SEALTUNE_EVENTS_FILE", str(tmp_path / "events.jsonl"))
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    model = get_peft_model(AutoModel.from_pretrained(MINILM), LoraConfig(r=4, target_modules=["query", "value"]))
    name, state, files = sealtune._model_files(model)
    assert name == "adapter_model.safetensors"
    assert len(state) == 6 * 2 * 2 and all("lora_" in k for k in state)
    assert json.loads(files["adapter_config.json"])["inference_mode"] is True
    sealtune.seal_model(model, output_dir=tmp_path / "out")
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()
