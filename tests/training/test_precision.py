"""train.precision=bf16 on CPU: the choice and its reason, fp32 files on disk, predict, and an exact resume."""

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import run_cli
from tests.run_files import losses
from tests.run_files import train as train_tiny
from translrec_dist.training import precision
from translrec_dist.training.precision import cpu_bf16_support, resolve_precision


def test_precision_choice_per_device(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: "CPU flags avx512_bf16")
    assert resolve_precision("bf16", on_gpu=False)[0] == "bf16"
    assert resolve_precision("fp16", on_gpu=False) == ("no", "train.precision=fp16 has no fast kernels on CPU; "
                                                       "training in fp32 (this CPU has native bf16: use "
                                                       "train.precision=bf16)")
    assert resolve_precision("bf16", on_gpu=False, deepspeed=True)[0] == "no"
    assert resolve_precision("fp16", on_gpu=True)[0] == "fp16"
    assert resolve_precision("no", on_gpu=False)[0] == "no"
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: None)
    kept, why = resolve_precision("bf16", on_gpu=False)
    assert kept == "no" and "no native bf16" in why


def train(out, *overrides):
    return train_tiny(out, "train.max_steps=12", "train.log_every=1", *overrides)


@pytest.mark.slow
def test_bf16_run_exports_fp32_predicts_and_resumes_exactly(tmp_path):
    native = cpu_bf16_support() is not None  # this project's machines have avx512_bf16
    full = train(tmp_path / "full", "train.precision=bf16")
    assert ("precision: bf16" if native else "precision: fp32") in full.stderr

    # Same interface as fp32: the same files, fp32 tensors on disk, predict works on the export.
    final = tmp_path / "full" / "final"
    for f in ("config.json", "model.safetensors", "tokenizer.json", "head.safetensors", "translrec.yaml"):
        assert (final / f).is_file(), f
    weights = load_file(str(final / "model.safetensors"))
    assert {v.dtype for v in [*weights.values(), *load_file(str(final / "head.safetensors")).values()]} == \
        {torch.float32}
    rows = tmp_path / "rows.csv"
    pd.DataFrame({"user_id": ["0", "1"], "item_id": ["3", "4"]}).to_csv(rows, index=False)
    preds = [json.loads(line) for line in
             run_cli(["predict", "--model", str(final), "--input", str(rows)]).stdout.splitlines()]
    assert [p["user_id"] for p in preds] == ["0", "1"] and all(0 < p["probability"] < 1 for p in preds)

    # Stopped after 5 steps and resumed: provably resumed, and ends with the uninterrupted run's weights.
    part = tmp_path / "part"
    stopped = train(part, "train.precision=bf16", "train.stop_after_steps=5")
    assert json.loads(stopped.stdout.splitlines()[-1]) == {"stopped": True, "step": 5}
    resumed = train(part, "train.precision=bf16", "train.resume_from=auto")
    assert "resumed from" in resumed.stderr and "step_5" in resumed.stderr
    assert sorted(losses(part)) == list(range(1, 13))  # steps 1..5, then 6..12: no gap, no repeat
    assert losses(part) == pytest.approx(losses(tmp_path / "full"), abs=1e-6)
    resumed_weights = load_file(str(part / "final" / "model.safetensors"))
    for k in weights:
        torch.testing.assert_close(resumed_weights[k], weights[k], rtol=0, atol=1e-6, msg=k)

    # bf16 really computed in bf16: the first step's loss differs from fp32's.
    if native:
        fp32 = tmp_path / "fp32"
        train(fp32, "train.precision=no", "train.stop_after_steps=1")
        assert abs(losses(fp32)[1] - losses(tmp_path / "full")[1]) > 1e-6


def test_the_scoring_head_runs_in_fp32_under_bf16_autocast():
    """Only the encoder's matmuls go to bf16: the one-unit head (and so the logit the loss and AUC see) stays fp32."""
    from transformers import BertConfig, BertModel

    from translrec_dist.models.encoders import pool
    from translrec_dist.models.pointwise.cross_encoder import CrossEncoder

    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=64), add_pooling_layer=False)
    model = CrossEncoder(encoder, "mean").eval()
    ids = torch.randint(1, 40, (4, 9))
    mask = torch.ones_like(ids)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(ids, mask)
        pooled = pool(encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask, "mean").float()
    assert logits.dtype == torch.float32
    with torch.no_grad():  # the same pooled vector through the head in fp32, outside autocast
        torch.testing.assert_close(logits, model.head(pooled).squeeze(-1), rtol=0, atol=0)
