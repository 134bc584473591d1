"""The stock training scripts: parameter validation, and the LoRA script run as 0G runs it (plain
python, no sealtune module), saving the adapter to --output_dir."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LORA = ROOT / "scripts" / "training" / "lora_causal_lm.py"


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lora():
    return load(LORA)


def write(tmp_path, text):
    p = tmp_path / "cfg.json"
    p.write_text(text)
    return p


def test_lora_params_valid_and_defaults(lora, tmp_path):
    p = lora.load_params(write(tmp_path, '{"learning_rate": 0.0002, "max_steps": -1, "num_train_epochs": 2}'))
    assert p == {"neftune_noise_alpha": 0, "num_train_epochs": 2, "per_device_train_batch_size": 2,
                 "learning_rate": 0.0002, "max_steps": -1}
    assert lora.load_params(write(tmp_path, '{"neftune_noise_alpha": 5.5, "num_train_epochs": 3.0}'))["num_train_epochs"] == 3


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"lr": 0.0002}', "unknown training params"),
        ('{"learning_rate": 2e-4}', "decimal notation"),
        ('{"learning_rate": 0.01}', "between"),
        ('{"learning_rate": "fast"}', "must be a number"),
        ('{"num_train_epochs": 11}', "between 1 and 10"),
        ('{"num_train_epochs": 1.5}', "integer"),
        ('{"per_device_train_batch_size": 0}', "between 1 and 4"),
        ('{"per_device_train_batch_size": true}', "boolean"),
        ('{"max_steps": 0}', "-1 or a positive"),
        ('{"neftune_noise_alpha": 11}', "between 0 and 10"),
        ('[1]', "JSON object"),
        ('{"max_steps": ', "not valid JSON"),
    ],
)
def test_lora_params_rejected(lora, tmp_path, text, message):
    with pytest.raises(lora.ParamError, match=message):
        lora.load_params(write(tmp_path, text))


def test_lora_options_top_level_or_lora_config(lora, tmp_path):
    top = lora.load_params(write(tmp_path, '{"r": 16, "lora_alpha": 32, "lora_dropout": 0.1, '
                                           '"target_modules": ["q_proj", "v_proj"], "merge_adapter": true}'))
    opea = lora.load_params(write(tmp_path, '{"lora_config": {"r": 16, "lora_alpha": 32, "lora_dropout": 0.1, '
                                            '"target_modules": ["q_proj", "v_proj"]}, "merge_adapter": true}'))
    assert top == opea
    assert {k: top[k] for k in ("r", "lora_alpha", "lora_dropout", "target_modules", "merge_adapter")} == {
        "r": 16, "lora_alpha": 32, "lora_dropout": 0.1, "target_modules": ["q_proj", "v_proj"], "merge_adapter": True}
    names = ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.layers.0.mlp.up_proj"]
    assert lora.lora_settings(top, names) == {"r": 16, "lora_alpha": 32, "lora_dropout": 0.1,
                                              "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM"}
    # Absent options: the defaults, and the attention projections the model has.
    assert lora.lora_settings({}, names) == {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05,
                                             "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM"}
    with pytest.raises(lora.ParamError, match=r"\['o_proj'\] are not modules"):
        lora.lora_settings({"target_modules": ["q_proj", "o_proj"]}, names)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"r": 0}', "r must be between 1 and 256"),
        ('{"r": 257}', "r must be between 1 and 256"),
        ('{"lora_alpha": 513}', "lora_alpha must be between 1 and 512"),
        ('{"lora_dropout": 1}', "lora_dropout must be from 0 up to"),
        ('{"lora_dropout": true}', "lora_dropout must be a number"),
        ('{"target_modules": []}', "target_modules must be 1 to 16"),
        ('{"target_modules": ["../x"]}', "target_modules must be 1 to 16"),
        ('{"target_modules": ["q_proj", "q_proj"]}', "target_modules must be 1 to 16"),
        ('{"merge_adapter": 1}', "merge_adapter must be true or false"),
        ('{"r": 8, "lora_config": {"r": 16}}', "both at the top level and inside lora_config"),
        ('{"lora_config": {"sparse_adapter": true}}', r"unknown lora_config keys \['sparse_adapter'\]"),
        ('{"lora_config": 8}', "lora_config must be an object"),
        ('{"lora_rank": 8}', "allowed: .*'lora_alpha'.*'lora_config'.*'merge_adapter'.*'r'.*'target_modules'"),
    ],
)
def test_lora_options_rejected(lora, tmp_path, text, message):
    with pytest.raises(lora.ParamError, match=message):
        lora.load_params(write(tmp_path, text))


def test_tokenizer_files_are_the_base_models_own(lora, tmp_path):
    for name in ("tokenizer.json", "tokenizer_config.json", "model.safetensors", "config.json"):
        (tmp_path / name).write_text("{}")
    assert lora.tokenizer_files(tmp_path) == {
        "tokenizer.json": tmp_path / "tokenizer.json", "tokenizer_config.json": tmp_path / "tokenizer_config.json"}


def test_lora_script_runs_as_0g_runs_it_without_sealtune(tmp_path):
    import datasets
    from huggingface_hub import snapshot_download

    recs = [{"instruction": "Capital of France?", "output": "Paris."}, {"text": "Hello world."}]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(recs)}).save_to_disk(str(tmp_path / "data"))
    cfg = write(tmp_path, json.dumps({"max_steps": 1, "per_device_train_batch_size": 2, "learning_rate": 0.0002}))
    # 0G's image has no sealtune module: block the import.
    runner = "import sys, runpy; sys.modules['sealtune'] = None; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", runner, str(LORA), "--data_path", str(tmp_path / "data"),
         "--model_path", snapshot_download("HuggingFaceTB/SmolLM2-135M-Instruct"),
         "--config_path", str(cfg), "--output_dir", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p.name for p in out.iterdir()} >= {"adapter_model.safetensors", "adapter_config.json"}
    assert not any(p.name.startswith("checkpoint") for p in out.iterdir())


def test_lora_eval_loss_is_seed_003s_mean_over_shifted_tokens(lora):
    """eval_loss = the sum of the token losses over the predicted tokens (padding excluded): for one
    record it is what the model's own shifted loss gives, and batching padded records changes nothing."""
    import torch
    from huggingface_hub import snapshot_download
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = snapshot_download("HuggingFaceTB/SmolLM2-135M-Instruct")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    one = [{"instruction": "Which color is the sky?", "output": "Blue."}]
    ids = tok(lora.render(tok, one[0]), return_tensors="pt")
    with torch.no_grad():
        expected = float(model(**ids, labels=ids["input_ids"]).loss)
    assert lora.eval_loss(model, tok, one) == pytest.approx(expected, rel=1e-5)

    records = one + [{"text": "A much longer plain text record, so that the batch is padded."}]
    together = lora.eval_loss(model, tok, records)
    sums = []
    for r in records:
        ids = tok(lora.render(tok, r), return_tensors="pt")
        n = ids["input_ids"].shape[1] - 1
        sums.append((lora.eval_loss(model, tok, [r]) * n, n))
    assert together == pytest.approx(sum(s for s, _ in sums) / sum(n for _, n in sums), rel=1e-5)


def test_lora_trains_on_the_answer_only(lora):
    from huggingface_hub import snapshot_download
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(snapshot_download("HuggingFaceTB/SmolLM2-135M-Instruct"))
    enc = lora.tokenize_for_training(tok, {"instruction": "Which color is the sky?", "output": "Blue."})
    trained = [t for t, l in zip(enc["input_ids"], enc["labels"]) if l != -100]
    assert "Blue." in tok.decode(trained)
    assert "sky" not in tok.decode(trained)
    text = lora.tokenize_for_training(tok, {"text": "Hello world."})
    assert text["labels"] == text["input_ids"]


def test_lora_evaluate_mode_reports_base_and_tuned_loss_with_the_one_eval_loss(tmp_path):
    """Evaluate mode (PROTOCOL.md §10): a freshly initialised LoRA adapter (B = 0) changes nothing, so
    the delivered model's eval_loss is the base's, on every record of the dataset; nothing is trained
    or written."""
    import datasets
    from huggingface_hub import snapshot_download
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = snapshot_download("HuggingFaceTB/SmolLM2-135M-Instruct")
    adapter = tmp_path / "tuned"
    get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    ).save_pretrained(str(adapter))
    recs = [{"instruction": "Which color is the sky?", "output": "Blue."}]
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(recs), "validation": datasets.Dataset.from_list(recs)}
    ).save_to_disk(str(tmp_path / "data"))
    cfg = write(tmp_path, json.dumps({"evaluate": {"tuned_model_path": str(adapter)}}))
    runner = "import sys, runpy; sys.modules['sealtune'] = None; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", runner, str(LORA), "--data_path", str(tmp_path / "data"),
         "--model_path", base, "--config_path", str(cfg), "--output_dir", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = {l.split(" ")[0]: l for l in proc.stdout.splitlines() if "eval_loss" in l}
    base_loss = float(lines["base_eval_loss"].split()[1].rstrip(","))
    tuned_loss = float(lines["eval_loss"].split()[1].rstrip(","))
    assert base_loss > 0 and tuned_loss == pytest.approx(base_loss, abs=1e-4)
    assert not out.exists()
