"""Build, train and evaluate the sequential recommender in one process (the benchmark's path).

``build_sequential`` reads the data, encodes (or loads cached) item text vectors and builds the model;
``fit`` is a plain epoch loop over shuffled training windows; ``evaluate_sequences`` ranks each eval
target against the whole catalog (masked and unmasked, cold and warm apart).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from translrec_dist.data.sequences import SequenceData, eval_histories, training_windows
from translrec_dist.evaluation.ranking import all_metrics, target_ranks
from translrec_dist.models.item_tower import cached_text_vectors, encode_texts
from translrec_dist.models.sequential import SequenceModel

if TYPE_CHECKING:
    from translrec_dist.config import RunConfig

log = logging.getLogger(__name__)


def item_encoder(cfg: RunConfig, catalog_texts: list[str]):
    """(encoder, tokenizer) of the item tower: ``model.name_or_path``, or a tiny BERT (seeded, with a
    WordPiece vocabulary trained on the catalog's texts) so that export and reload see the same encoder."""
    from translrec_dist.data.tokenize import load_tokenizer, train_wordpiece
    from translrec_dist.models.cross_encoder import build_encoder

    m = cfg.model
    if m.tiny is None:
        tokenizer = load_tokenizer(m.name_or_path, m.trust_remote_code)
    else:
        tokenizer = train_wordpiece(iter(catalog_texts), m.tiny.vocab_size, cfg.data.max_length)
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        encoder = build_encoder(cfg, vocab_size=len(tokenizer))
    return encoder, tokenizer


def item_text_vectors(cfg: RunConfig, data: SequenceData, cache_dir: Path) -> torch.Tensor:
    """Pooled vectors of every catalog item's text (cached per encoder state and catalog)."""
    m = cfg.model
    texts = [str(t) for t in data.item_text.to_numpy()]

    def compute(texts):
        encoder, tokenizer = item_encoder(cfg, texts)
        return encode_texts(encoder, tokenizer, texts, m.pooling, cfg.data.max_length)

    key = [str(m.name_or_path), str(m.tiny), str(cfg.seed) if m.tiny else "", m.pooling, str(cfg.data.max_length)]
    return cached_text_vectors(cache_dir, key, texts, compute)


def build_sequential(cfg: RunConfig, data: SequenceData, text_vectors: torch.Tensor | None) -> SequenceModel:
    s = cfg.model.sequence
    model = SequenceModel(s, data.num_items, cfg.data.max_history,
                          text_vectors.shape[1] if text_vectors is not None else 0, cfg.train.gather_negatives)
    if text_vectors is not None and s.item_repr != "id":
        model.items.set_text_vectors(text_vectors)
    if s.encoder != "frozen" and s.item_repr != "id":
        from translrec_dist.models.trainable_items import TextEncoderItems, tokenize_catalog_tensors

        texts = [str(t) for t in data.item_text.to_numpy()]
        encoder, tokenizer = item_encoder(cfg, texts)
        tokens = tokenize_catalog_tensors(tokenizer, texts, cfg.data.max_length)
        model.attach_text_encoder(TextEncoderItems(encoder, tokens, cfg.model.pooling, s.encoder, s.train_layers))
    model.set_popularity(torch.as_tensor(data.popularity))
    return model


@dataclass
class FitStats:
    seconds: float
    windows: int
    positions: int
    epochs: float

    def rates(self) -> dict:
        return {"train_seconds": round(self.seconds, 1), "sequences_per_s": round(self.windows / self.seconds, 1),
                "positions_per_s": round(self.positions / self.seconds, 1), "epochs": self.epochs}


def fit(model: SequenceModel, data: SequenceData, cfg: RunConfig, eval_every: int = 0) -> FitStats:
    t, s = cfg.train, cfg.model.sequence
    windows = torch.as_tensor(training_windows(data.train, cfg.data.max_history, s.window_stride))
    positions_per_epoch = int(((windows[:, :-1] >= 0) & (windows[:, 1:] >= 0)).sum())
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    epochs = int(np.ceil(t.epochs))
    model.train()
    start = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(windows), generator=gen)
        total, steps = 0.0, 0
        for i in range(0, len(order), t.micro_batch_size):
            batch = windows[order[i:i + t.micro_batch_size]]
            negatives = model.sample_negatives(s.num_negatives, gen) if s.loss == "sampled" else None
            loss = model(batch, negatives if s.num_negatives else None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if t.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.max_grad_norm)
            opt.step()
            total, steps = total + loss.item(), steps + 1
        msg = f"epoch {epoch + 1}/{epochs} loss {total / max(steps, 1):.4f} ({time.perf_counter() - start:.0f} s)"
        if eval_every and (epoch + 1) % eval_every == 0 and epoch + 1 < epochs:
            m = evaluate_sequences(model, data, "valid", cfg.data.max_history)
            msg += f" valid ndcg@10_masked {m['ndcg@10_masked']:.4f}"
            model.train()
        log.info(msg)
    seconds = time.perf_counter() - start
    return FitStats(seconds, len(windows) * epochs, positions_per_epoch * epochs, t.epochs)


@torch.no_grad()
def evaluate_sequences(model: SequenceModel, data: SequenceData, split: str, max_history: int,
                       batch_size: int = 256, ks=(10, 50)) -> dict:
    was_training = model.training
    model.eval()
    frame = data.evals[split]
    histories = torch.as_tensor(eval_histories(frame, max_history))
    catalog = model.catalog()
    ranks, masked = [], []
    for i in range(0, len(frame), batch_size):
        users = model.user_vectors(histories[i:i + batch_size], catalog)
        part = frame.iloc[i:i + batch_size]
        r, rm = target_ranks(model.score(users, catalog), torch.tensor(part["label"].to_numpy()),
                             list(part["history"]))
        ranks.append(r)
        masked.append(rm)
    model.train(was_training)
    return all_metrics(torch.cat(ranks).numpy(), torch.cat(masked).numpy(), frame["cold"].to_numpy(bool), ks)
