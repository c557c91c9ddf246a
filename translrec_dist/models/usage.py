"""The pieces of a model card's "How to load" section (markdown lines); each task composes its own
(``Task.usage``) and ``models.model_card`` writes them."""

from __future__ import annotations


def translrec_usage(command: str) -> list[str]:
    return ["translrec:", "", "```bash", command, "```", ""]


def sentence_transformers_usage(what: str) -> list[str]:
    return ["sentence-transformers (" + what + "):", "", "```python",
            "from sentence_transformers import SentenceTransformer",
            'vectors = SentenceTransformer("final").encode(["history or item text"])', "```", ""]


def sequence_classification_usage(what: str, max_length: int, score: str) -> list[str]:
    return ["transformers (" + what + "):", "", "```python",
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
            'model = AutoModelForSequenceClassification.from_pretrained("final").eval()',
            'tok = AutoTokenizer.from_pretrained("final")',
            f"logits = model(**tok(history_text, item_text, truncation=True, max_length={max_length},"
            ' return_tensors="pt")).logits[:, 0]', f"score = {score}", "```", ""]


def hand_scoring_usage(pooling: str) -> list[str]:
    pooled = "h[:, 0]" if pooling == "cls" else "(h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)"
    return ["transformers: the head (`head.safetensors`) cannot be expressed as this architecture's "
            f"sequence-classification head ({pooling} pooling), so score it by hand:", "",
            "```python", "from safetensors.torch import load_file",
            "from transformers import AutoModel, AutoTokenizer",
            'enc, tok, head = AutoModel.from_pretrained("final"), AutoTokenizer.from_pretrained("final"), '
            'load_file("final/head.safetensors")',
            "x = tok(history_text, item_text, return_tensors='pt'); mask = x['attention_mask']",
            "h = enc(**x).last_hidden_state", f"logit = {pooled} @ head['weight'].T + head['bias']", "```", ""]


def encoder_usage(model_class: str = "AutoModel") -> list[str]:
    return [f'transformers: `{model_class}.from_pretrained("final")` loads the encoder.', ""]
