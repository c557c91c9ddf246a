"""The pieces of a model card's "How to load" section (markdown lines); each task composes its own
(``Task.usage``) and ``models.model_card`` writes them.

Every ``python`` block runs as it stands from the folder that holds the export (tests run them): the examples
carry their own inputs. ``MODEL_DIR`` stands for the export's folder name and is filled in by ``for_directory``.
"""

from __future__ import annotations

import json

MODEL_DIR = "{MODEL_DIR}"
HISTORY = "The Matrix ; Alien ; Blade Runner"  # an example user history (newest first) and items
ITEMS = ["Star Wars", "Finding Nemo"]


def for_directory(lines: list[str], name: str) -> list[str]:
    return [line.replace(MODEL_DIR, name) for line in lines]


def translrec_usage(command: str) -> list[str]:
    return ["translrec:", "", "```bash", command.replace("final", MODEL_DIR), "```", ""]


def sentence_transformers_usage(what: str, item_folder: str | None, similarity: str) -> list[str]:
    items = f'SentenceTransformer("{MODEL_DIR}/{item_folder}")' if item_folder else "users"
    return ["sentence-transformers (" + what + "):", "", "```python",
            "from sentence_transformers import SentenceTransformer",
            "",
            f'users = SentenceTransformer("{MODEL_DIR}")',
            f"items = {items}",
            f"u = users.encode([{HISTORY!r}])",
            f"v = items.encode({ITEMS!r})",
            f"print(users.similarity(u, v))  # translrec's score ({similarity}), as `translrec recommend` ranks",
            "```", ""]


def text_classification_usage(what: str, max_length: int, score: str) -> list[str]:
    pair = json.dumps({"text": HISTORY, "text_pair": ITEMS[0]})
    return ["transformers (" + what + "):", "", "```python",
            "from transformers import pipeline",
            "",
            f'clf = pipeline("text-classification", model="{MODEL_DIR}")',
            f"print(clf({pair}, truncation=True, max_length={max_length}))  # score: {score}",
            "```", "",
            "or by hand:", "", "```python",
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
            "",
            f'model = AutoModelForSequenceClassification.from_pretrained("{MODEL_DIR}").eval()',
            f'tok = AutoTokenizer.from_pretrained("{MODEL_DIR}")',
            f"x = tok({HISTORY!r}, {ITEMS[0]!r}, truncation=True, max_length={max_length}, return_tensors='pt')",
            "logit = model(**x).logits[:, 0]",
            f"print({'logit.sigmoid()' if 'sigmoid' in score else 'logit'})",
            "```", ""]


def hand_scoring_usage(pooling: str, max_length: int) -> list[str]:
    pooled = "h[:, 0]" if pooling == "cls" else "(h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)"
    return ["transformers: the head (`head.safetensors`) cannot be expressed as this architecture's "
            f"sequence-classification head ({pooling} pooling), so score it by hand:", "",
            "```python", "from safetensors.torch import load_file",
            "from transformers import AutoModel, AutoTokenizer",
            "",
            f'enc, tok = AutoModel.from_pretrained("{MODEL_DIR}").eval(), AutoTokenizer.from_pretrained("{MODEL_DIR}")',
            f'head = load_file("{MODEL_DIR}/head.safetensors")',
            f"x = tok({HISTORY!r}, {ITEMS[0]!r}, truncation=True, max_length={max_length}, return_tensors='pt')",
            "mask = x['attention_mask']",
            "h = enc(**x).last_hidden_state",
            f"logit = {pooled} @ head['weight'].T + head['bias']",
            "print(logit)", "```", ""]


def encoder_usage(model_class: str = "AutoModel") -> list[str]:
    return [f"transformers (the encoder alone, `{model_class}`):", "", "```python",
            f"from transformers import {model_class}",
            "",
            f'print({model_class}.from_pretrained("{MODEL_DIR}").config.model_type)', "```", ""]


def fill_mask_usage() -> list[str]:
    return ["transformers (the domain-adapted masked LM):", "", "```python",
            "from transformers import pipeline",
            "",
            f'fill = pipeline("fill-mask", model="{MODEL_DIR}")',
            'print(fill(f"The Matrix ; {fill.tokenizer.mask_token} ; Blade Runner")[:3])', "```", ""]


def recommender_usage(item: str) -> list[str]:
    """The Python API; it reads the training data named in ``translrec.yaml`` to index the catalog."""
    return ["Python (`pip install translrec-dist`; indexes the catalog from the data the model was trained on):", "",
            "```python", "from translrec_dist import Recommender",
            "",
            f'rec = Recommender.from_pretrained("{MODEL_DIR}")',
            f"print(rec.recommend(history=[{item!r}], top_k=5))", "```", ""]
