"""Transfer knobs: freezing, layer-wise lr decay, LoRA (peft), init_from, and task=mlm feeding a fine-tune."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

from tests.conftest import FAST, TINY, run_cli
from translrec_dist.data.tokenize import train_wordpiece
from translrec_dist.models.retrieval.bi_encoder import build_bi_encoder
from translrec_dist.program import write_export
from translrec_dist.run_dir import RunDir
from translrec_dist.training.optim import build_optimizer

TEXTS = ["galaxy robot alien", "pasta garlic chef", "ghost crypt curse", "yoga running gym"] * 20


def tiny_batch(tok, n: int = 4) -> dict:
    users = tok(TEXTS[:n], padding=True, return_tensors="pt")
    items = tok(TEXTS[1:n + 1], padding=True, return_tensors="pt")
    return {"input_ids": users["input_ids"], "attention_mask": users["attention_mask"],
            "item_input_ids": items["input_ids"], "item_attention_mask": items["attention_mask"],
            "item_index": torch.arange(n)}


@pytest.fixture
def tok():
    return train_wordpiece(TEXTS, 120, 32)


def test_frozen_embeddings_and_layers_do_not_move(tiny_cfg, tok):
    cfg = tiny_cfg("task=retrieval", "model.freeze_embeddings=true", "model.freeze_layers=1", "model.pooling=mean")
    model = build_bi_encoder(cfg, tok)
    enc = model.encoder
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = build_optimizer(cfg, model)
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not any(id(p) in in_optimizer for p in enc.embeddings.parameters())
    assert not any(id(p) in in_optimizer for p in enc.encoder.layer[0].parameters())
    model(**tiny_batch(tok)).backward()
    optimizer.step()
    for name, p in model.named_parameters():
        moved = not torch.equal(before[name], p.detach())
        if name.startswith(("encoder.embeddings.", "encoder.encoder.layer.0.")):
            assert not moved and p.grad is None, name
        else:
            assert moved, name


def test_layer_wise_lr_decay(tiny_cfg, tok):
    cfg = tiny_cfg("task=retrieval", "train.layer_lr_decay=0.5", "train.lr=1.0")  # tiny: 2 layers
    model = build_bi_encoder(cfg, tok)
    lr_of = {id(p): g["lr"] for g in build_optimizer(cfg, model).param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert lr_of[id(params["encoder.embeddings.word_embeddings.weight"])] == pytest.approx(0.125)
    assert lr_of[id(params["encoder.encoder.layer.0.attention.self.query.weight"])] == pytest.approx(0.25)
    assert lr_of[id(params["encoder.encoder.layer.1.output.dense.weight"])] == pytest.approx(0.5)


def test_lora_trains_adapters_only_and_exports_a_merged_plain_encoder(tiny_cfg, tok, tmp_path: Path):
    cfg = tiny_cfg("task=retrieval", "model.lora.r=4", "model.pooling=mean")
    model = build_bi_encoder(cfg, tok)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    optimizer = build_optimizer(cfg, model)
    for _ in range(3):  # move the adapters away from their zero init
        model(**tiny_batch(tok)).backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    batch = tiny_batch(tok)
    expected = model.encode_users(batch["input_ids"], batch["attention_mask"])
    write_export(tmp_path, model.state_dict(), model, tok, cfg)
    assert not any("lora" in k for k in load_file(str(tmp_path / "model.safetensors")))
    plain = AutoModel.from_pretrained(str(tmp_path)).eval()
    hidden = plain(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    got = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_mlm_export_starts_a_retrieval_fine_tune_and_init_from_reloads_it(tmp_path: Path):
    mlm = tmp_path / "mlm"
    run_cli(["train", str(TINY), *FAST, "task=mlm", "train.epochs=3", "eval.splits=[valid]", f"output_dir={mlm}"])
    metrics = [json.loads(line) for line in RunDir(mlm).metrics.read_text().splitlines()]
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert losses[-1] < losses[0]  # the masked-token loss goes down on item text
    assert json.loads(RunDir(mlm).eval.read_text())["valid"]["perplexity"] > 1
    plain = AutoModel.from_pretrained(str(mlm / "final"))  # a plain HF checkpoint

    ft = tmp_path / "ft"
    run_cli(["train", str(TINY), *FAST, "task=retrieval", "model.tiny=null", f"model.name_or_path={mlm / 'final'}",
             "model.pooling=mean", "train.max_steps=2", f"output_dir={ft}"])
    assert "ndcg@10" in json.loads(RunDir(ft).eval.read_text())

    # the fine-tune starts from the adapted encoder, and init_from continues from the fine-tune's export
    from translrec_dist.config.loader import load_config
    from translrec_dist.data.tokenize import load_tokenizer

    cfg = load_config(TINY, [*FAST, "task=retrieval", "model.tiny=null", f"model.name_or_path={mlm / 'final'}"])
    start = build_bi_encoder(cfg, load_tokenizer(str(mlm / "final")))
    torch.testing.assert_close(start.encoder.embeddings.word_embeddings.weight,
                               plain.embeddings.word_embeddings.weight)
    cfg = load_config(TINY, [*FAST, "task=retrieval", f"model.init_from={ft / 'final'}"])
    resumed = build_bi_encoder(cfg, load_tokenizer(str(ft / "final")))
    saved = load_file(str(ft / "final" / "model.safetensors"))
    torch.testing.assert_close(resumed.encoder.encoder.layer[1].output.dense.weight,
                               saved["encoder.layer.1.output.dense.weight"])


def test_layer_wise_lr_decay_reaches_inside_the_mlm_model(tiny_cfg, tok):
    from translrec_dist.models.mlm.masked_lm import build_mlm_model

    cfg = tiny_cfg("task=mlm", "train.layer_lr_decay=0.5", "train.lr=1.0")
    model = build_mlm_model(cfg, tok)
    lr_of = {n: g["lr"] for g in build_optimizer(cfg, model).param_groups for n, p in model.named_parameters()
             if any(p is q for q in g["params"])}
    assert lr_of["lm.bert.encoder.layer.0.attention.self.query.weight"] == pytest.approx(0.25)
    assert max(lr_of.values()) == pytest.approx(1.0)  # the MLM head
