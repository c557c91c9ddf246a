"""Make an export loadable by other tools, without translrec.

Each task says what it adds (``Task.write_interop``); ``models.export.write_export`` calls it after the
translrec files are in ``out_dir``, then writes the model card:

- retrieval: the directory is also a sentence-transformers model (``modules.json``, ``1_Pooling``, ``2_Normalize``
  for cosine similarity, ``sentence_bert_config.json``). It is the user (query) tower; with shared towers it is
  the item tower too. Learned item-id vectors (``model.item_id_embeddings``) are not part of it.
- ctr / rating: ``AutoModelForSequenceClassification.from_pretrained(final)`` (one label) gives translrec's
  score (the logit; ``translrec predict`` reports ``sigmoid(logit)`` for ctr), when the head can be expressed as
  the architecture's classifier, see ``classifier_weights``.
- every export: a model card (``README.md``, ``models/model_card.py``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file
from torch import nn

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig

log = logging.getLogger(__name__)

# tanh(eps*s)/eps = s - eps^2 s^3/3 + ...: below 1e-5 absolute for |s| < 21 with eps=1e-4, while fp32 rounding
# of tanh(eps*s) (relative 6e-8) stays below 1e-6 after dividing by eps.
TANH_EPS = 1e-4




# --------------------------------------------------------------------------- sentence-transformers


def write_sentence_transformers(out_dir: Path, cfg: RunConfig) -> str:
    hidden = json.loads((out_dir / "config.json").read_text())["hidden_size"]
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if cfg.model.similarity == "cosine":
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (out_dir / "2_Normalize").mkdir(exist_ok=True)
    pooling = {"word_embedding_dimension": hidden, "pooling_mode_cls_token": cfg.model.pooling == "cls",
               "pooling_mode_mean_tokens": cfg.model.pooling == "mean", "pooling_mode_max_tokens": False,
               "pooling_mode_mean_sqrt_len_tokens": False}
    (out_dir / "1_Pooling").mkdir(exist_ok=True)
    _write_json(out_dir / "1_Pooling" / "config.json", pooling)
    _write_json(out_dir / "modules.json", modules)
    # translrec truncates at data.max_length when it encodes; the same limit keeps the vectors equal.
    _write_json(out_dir / "sentence_bert_config.json", {"max_seq_length": cfg.data.max_length,
                                                         "do_lower_case": False})
    towers = "user and item tower (shared)" if cfg.model.share_towers else "user tower (items: item_encoder/)"
    return f"{cfg.model.pooling} pooling{', normalized' if cfg.model.similarity == 'cosine' else ''}; {towers}"


# --------------------------------------------------------------------------- sequence classification


def write_sequence_classification(out_dir: Path, cfg: RunConfig) -> str | None:
    """Map ``head(dropout(pool(encoder(x))))`` onto ``AutoModelForSequenceClassification`` with one label.

    Exact only where the architecture's classifier reads the CLS vector through a linear map. BERT-family
    models put ``pooler = tanh(dense(h_cls))`` before ``classifier``: the dense layer carries ``eps * w`` in one
    row and the classifier ``1/eps``, so the logit is ``tanh(eps * w.h)/eps + b``, equal to ``w.h + b`` up to
    ``eps^2 |w.h|^3 / 3`` (TANH_EPS). Mean pooling has no counterpart in any built-in classification head: no
    classifier is written, and the card says to load the export with translrec (or the snippet it shows).
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    if cfg.model.pooling != "cls":
        return None
    config = AutoConfig.from_pretrained(str(out_dir))
    config.num_labels = 1
    with torch.device("meta"):  # layout only
        try:
            clf = AutoModelForSequenceClassification.from_config(config)
        except (ValueError, KeyError):
            return None
    pooler = getattr(clf.base_model, "pooler", None)
    if not (isinstance(getattr(clf, "classifier", None), nn.Linear) and pooler is not None
            and isinstance(getattr(pooler, "dense", None), nn.Linear) and isinstance(pooler.activation, nn.Tanh)):
        log.info("export: %s has no (tanh pooler + linear classifier) head; AutoModelForSequenceClassification "
                 "will not reproduce the scores (model card says how to load it)", type(clf).__name__)
        return None
    head = load_file(str(out_dir / "head.safetensors"))
    weights_file = out_dir / "model.safetensors"
    if not weights_file.is_file():  # a sharded export: leave it to translrec
        return None
    state = load_file(str(weights_file))
    if any(k.startswith(clf.base_model_prefix + ".") for k in state):
        return None
    state.update(classifier_weights(head["weight"], head["bias"]))
    save_file(state, str(weights_file), metadata={"format": "pt"})
    config.architectures = [type(clf).__name__]
    config.problem_type = "regression"  # one output: the score; ctr applies the sigmoid outside
    config.save_pretrained(str(out_dir))
    return f"{type(clf).__name__}, num_labels=1 (cls pooling; tanh pooler linearized, eps={TANH_EPS:g})"


def classifier_weights(w: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
    """pooler.dense + classifier weights whose output is tanh(eps * w.h)/eps + b (see above)."""
    w = w.reshape(-1).float()
    hidden = w.numel()
    dense = torch.zeros(hidden, hidden)
    dense[0] = TANH_EPS * w
    classifier = torch.zeros(1, hidden)
    classifier[0, 0] = 1.0 / TANH_EPS
    return {"pooler.dense.weight": dense, "pooler.dense.bias": torch.zeros(hidden),
            "classifier.weight": classifier, "classifier.bias": b.reshape(1).float().clone()}


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
