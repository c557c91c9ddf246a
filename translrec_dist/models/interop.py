"""Make an export loadable by other tools, without translrec.

Each task says what it adds (``Task.write_interop``); ``models.export.write_export`` calls it after the
translrec files are in ``out_dir``, then writes the model card:

- retrieval: the directory is also a sentence-transformers model (``modules.json``, ``1_Pooling``, ``2_Normalize``
  for cosine similarity, ``sentence_bert_config.json``, ``config_sentence_transformers.json`` with the similarity
  function). It is the user (query) tower; with shared towers it is the item tower too, otherwise ``item_encoder/``
  is another sentence-transformers model. Learned item-id vectors (``model.item_id_embeddings``) are not part of it.
- ctr / rating: ``AutoModelForSequenceClassification.from_pretrained(final)`` (one label) gives translrec's
  logit, when the head can be expressed as the architecture's classifier, see ``classifier_weights``. ctr's
  ``problem_type`` (multi-label) makes the text-classification pipeline report ``sigmoid(logit)``, as
  ``translrec predict`` does, and transformers train it with BCE; rating stays a regression.
- every export: a model card (``README.md``, ``models/model_card.py``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save
from torch import nn

from translrec_dist import safe_io

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig

log = logging.getLogger(__name__)

# tanh(eps*s)/eps = s - eps^2 s^3/3 + ...: below 1e-5 absolute for |s| < 21 with eps=1e-4, while fp32 rounding
# of tanh(eps*s) (relative 6e-8) stays below 1e-6 after dividing by eps.
TANH_EPS = 1e-4


# --------------------------------------------------------------------------- sentence-transformers


def write_sentence_transformers(out_dir: Path, cfg: RunConfig) -> str:
    """The user tower as a sentence-transformers model; with separate towers, ``item_encoder/`` as another one.
    ``config_sentence_transformers.json`` names the similarity translrec scores with, so that
    ``SentenceTransformer.similarity`` gives ``translrec recommend``'s score (cosine, or the raw dot product)."""
    from translrec_dist.models.retrieval.bi_encoder import ITEM_ENCODER_DIR

    write_sentence_transformer_files(out_dir, cfg, out_dir)
    if (out_dir / ITEM_ENCODER_DIR / "config.json").is_file():
        copy_tokenizer(out_dir, out_dir / ITEM_ENCODER_DIR)  # both towers read the one tokenizer
        write_sentence_transformer_files(out_dir / ITEM_ENCODER_DIR, cfg, out_dir)
    towers = ("user and item tower (shared)" if cfg.model.share_towers
              else f"user tower; items: {ITEM_ENCODER_DIR}/")
    return (f"{cfg.model.pooling} pooling{', normalized' if cfg.model.similarity == 'cosine' else ''}, "
            f"similarity {cfg.model.similarity}; {towers}")


def copy_tokenizer(src: Path, dst: Path) -> None:
    """The tokenizer of ``src`` saved into ``dst`` as well (a model folder another tool opens alone)."""
    import tempfile

    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        AutoTokenizer.from_pretrained(str(src)).save_pretrained(tmp)
        for f in Path(tmp).iterdir():
            safe_io.write_bytes(dst / f.name, f.read_bytes(), src)


def write_sentence_transformer_files(model_dir: Path, cfg: RunConfig, root: Path) -> None:
    hidden = json.loads((model_dir / "config.json").read_text())["hidden_size"]
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if cfg.model.similarity == "cosine":
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        safe_io.make_dirs(model_dir / "2_Normalize", root)
    pooling = {"word_embedding_dimension": hidden, "pooling_mode_cls_token": cfg.model.pooling == "cls",
               "pooling_mode_mean_tokens": cfg.model.pooling == "mean", "pooling_mode_max_tokens": False,
               "pooling_mode_mean_sqrt_len_tokens": False}
    _write_json(model_dir / "1_Pooling" / "config.json", pooling, root)
    _write_json(model_dir / "modules.json", modules, root)
    # translrec truncates at data.max_length when it encodes; the same limit keeps the vectors equal.
    _write_json(model_dir / "sentence_bert_config.json", {"max_seq_length": cfg.data.max_length,
                                                           "do_lower_case": False}, root)
    # sentence-transformers' names: "cosine" and "dot" (SimilarityFunction)
    _write_json(model_dir / "config_sentence_transformers.json",
                {"model_type": "SentenceTransformer", "prompts": {}, "default_prompt_name": None,
                 "similarity_fn_name": cfg.model.similarity}, root)


# --------------------------------------------------------------------------- sequence classification


def write_sequence_classification(out_dir: Path, cfg: RunConfig, problem_type: str, label: str) -> str | None:
    """Map ``head(dropout(pool(encoder(x))))`` onto ``AutoModelForSequenceClassification`` with one label.

    Exact only where the architecture's classifier reads the CLS vector through a linear map. BERT-family
    models put ``pooler = tanh(dense(h_cls))`` before ``classifier``: the dense layer carries ``eps * w`` in one
    row and the classifier ``1/eps``, so the logit is ``tanh(eps * w.h)/eps + b``, equal to ``w.h + b`` up to
    ``eps^2 |w.h|^3 / 3`` (TANH_EPS). ``problem_type`` decides what transformers makes of the one logit (the
    pipeline's sigmoid or not, BCE or MSE in training); ``label`` names it. Mean pooling has no counterpart in
    any built-in classification head: no classifier is written, and the card says to load the export with
    translrec (or the snippet it shows).
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    if cfg.model.pooling != "cls":
        return None
    config = AutoConfig.from_pretrained(str(out_dir), trust_remote_code=False)  # our own export, just written
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
    safe_io.write_bytes(weights_file, save(state, metadata={"format": "pt"}), out_dir)
    config.architectures = [type(clf).__name__]
    config.problem_type = problem_type
    config.id2label, config.label2id = {0: label}, {label: 0}
    safe_io.write_text(out_dir / "config.json", config.to_json_string(), out_dir)
    return (f"{type(clf).__name__}, num_labels=1, problem_type={problem_type} (cls pooling; tanh pooler "
            f"linearized, eps={TANH_EPS:g})")


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


def _write_json(path: Path, data, root: Path) -> None:
    safe_io.write_text(path, json.dumps(data, indent=2) + "\n", root)
