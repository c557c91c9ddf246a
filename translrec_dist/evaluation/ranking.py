"""Full-catalog ranking evaluation (the Recformer / UniSRec protocol): every target against every item.

The catalog is encoded in slices, one per rank, and gathered; each rank scores its users in batches
with one matmul against the whole catalog. The rank of the target is the number of other items scoring
at least as high (ties count against the model: a collapsed model that gives every item the same score
ranks every target last, not first), so NDCG@K, Recall@K and MRR come from one integer per user.
Metrics without a suffix rank the user's earlier items too (comparable with Recformer and RecBole's
unfiltered full ranking);
``_masked`` removes them from the ranking; ``cold_*`` restrict to targets no training interaction has,
``warm_*`` to the others.
"""

from __future__ import annotations

import numpy as np
import torch

from translrec_dist.models.encoding import encode_tokenized, put_in_order


def ranking_metrics(ranks: np.ndarray, ks=(10, 50), suffix: str = "") -> dict[str, float]:
    """0-based ranks of the targets (one relevant item per user) -> RecBole's ndcg@K, recall@K, hit@K,
    precision@K, map@K, and mrr (not truncated). With one relevant item hit@K equals recall@K, precision@K is
    hit@K / K and the average precision at K is 1/(rank+1) inside the top K."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float] = {}
    if len(ranks) == 0:
        return out
    for k in ks:
        hit = ranks < k
        out[f"ndcg@{k}{suffix}"] = float(np.mean(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)))
        out[f"recall@{k}{suffix}"] = float(np.mean(hit))
        out[f"hit@{k}{suffix}"] = float(np.mean(hit))
        out[f"precision@{k}{suffix}"] = float(np.mean(hit) / k)
        out[f"map@{k}{suffix}"] = float(np.mean(np.where(hit, 1.0 / (ranks + 1.0), 0.0)))
    out[f"mrr{suffix}"] = float(np.mean(1.0 / (ranks + 1.0)))
    return out


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, history: list[list[int]]) -> tuple[torch.Tensor, ...]:
    """(rank, rank with the history masked) of each row's target in ``scores`` [users x items]."""
    target_score = scores.gather(1, targets[:, None])
    ranks = at_least_as_high(scores, target_score)
    rows = torch.repeat_interleave(torch.arange(len(history)), torch.tensor([len(h) for h in history]))
    cols = torch.tensor([i for h in history for i in h], dtype=torch.long)
    masked = scores.clone()
    masked[rows.to(scores.device), cols.to(scores.device)] = float("-inf")
    masked.scatter_(1, targets[:, None], target_score)  # a re-consumed target stays rankable
    return ranks, at_least_as_high(masked, target_score)


def at_least_as_high(scores: torch.Tensor, target_score: torch.Tensor) -> torch.Tensor:
    """Items other than the target scoring >= it (the target itself is the one tie always present)."""
    return (scores >= target_score).sum(1) - 1


def pad_token_id(collate) -> int:
    return getattr(collate, "pad", collate).pad_token_id  # a RetrievalCollator pads through its PadCollator


def encode_rows(model, rows, pad_token_id: int, accelerator, batch_size: int, tower: str,
                extra: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(row positions, vectors) of this rank's share of ``rows`` through ``tower`` (length-sorted, the same count
    on every rank, as ZeRO-3 forwards are collectives; -1 marks padding rows)."""
    return encode_tokenized(lambda batch: model(**batch, encode=tower), rows, pad_token_id, batch_size=batch_size,
                            device=accelerator.device, precision=accelerator.mixed_precision,
                            rank=accelerator.process_index, world=accelerator.num_processes, extra=extra,
                            inference_mode=accelerator.state.deepspeed_plugin is None)


def encode_catalog(model, catalog, collate, accelerator, batch_size: int) -> torch.Tensor:
    """[num_items x dim] item vectors: each rank encodes a share, the shares are gathered in catalog order."""
    positions, vectors = encode_rows(model, catalog, pad_token_id(collate), accelerator, batch_size, "items",
                                     {"item_index": np.arange(len(catalog))})
    return put_in_order(accelerator.gather(positions), accelerator.gather(vectors), len(catalog))


@torch.no_grad()
def evaluate_ranking(model, users, frame, catalog, collate, accelerator, batch_size: int,
                     ks=(10, 50)) -> dict[str, float]:
    """Metrics of one split. ``users``: tokenized histories; ``frame``: the split's rows (history, cold)."""
    was_training = model.training
    model.eval()
    items = encode_catalog(model, catalog, collate, accelerator, batch_size)
    history = dict(zip(frame["example_id"].to_numpy(), frame["history"], strict=True))
    positions, user_vectors = encode_rows(model, users, pad_token_id(collate), accelerator, batch_size, "users")
    dev = accelerator.device
    example_id = torch.as_tensor(np.asarray(users["example_id"], dtype=np.int64), device=dev)
    target = torch.as_tensor(np.asarray(users["label"]), device=dev).long()  # the target's catalog position
    ids, ranks, ranks_masked = [], [], []
    for start in range(0, len(positions), batch_size):
        pos = positions[start:start + batch_size]
        example_ids = torch.where(pos >= 0, example_id[pos.clamp(min=0)], -1)
        hist = [history.get(int(i), []) if i >= 0 else [] for i in example_ids.tolist()]
        r, rm = target_ranks(user_vectors[start:start + batch_size] @ items.T, target[pos.clamp(min=0)], hist)
        ids.append(example_ids)
        ranks.append(r)
        ranks_masked.append(rm)
    model.train(was_training)
    ids_all, r_all, rm_all = (accelerator.gather(torch.cat(x)).cpu().numpy() for x in (ids, ranks, ranks_masked))
    keep = ids_all >= 0
    ids_all, first = np.unique(ids_all[keep], return_index=True)
    r_all, rm_all = r_all[keep][first], rm_all[keep][first]
    cold = frame.set_index("example_id")["cold"].reindex(ids_all).to_numpy().astype(bool)
    return {**all_metrics(r_all, rm_all, cold, ks), "num_items": len(catalog)}


def all_metrics(ranks: np.ndarray, ranks_masked: np.ndarray, cold: np.ndarray, ks=(10, 50)) -> dict[str, float]:
    return {**ranking_metrics(ranks, ks), **ranking_metrics(ranks_masked, ks, "_masked"),
            **{f"cold_{k}": v for k, v in ranking_metrics(ranks[cold], ks).items()},
            **{f"cold_{k}": v for k, v in ranking_metrics(ranks_masked[cold], ks, "_masked").items()},
            **{f"warm_{k}": v for k, v in ranking_metrics(ranks[~cold], ks).items()},
            **{f"warm_{k}": v for k, v in ranking_metrics(ranks_masked[~cold], ks, "_masked").items()},
            "num_examples": int(len(ranks)), "num_cold": int(cold.sum())}


def evaluate_on_data(model, tokenizer, cfg, data, split: str, accelerator) -> dict:
    """Tokenize one split's histories and the catalog with ``tokenizer``, then rank (``evaluate_ranking``)."""
    from translrec_dist.data.retrieval import RetrievalCollator, tokenize_catalog, tokenize_users

    n = cfg.data.max_length
    users = tokenize_users(data.splits[split], tokenizer, n)
    catalog = tokenize_catalog(data.item_text, tokenizer, n)
    return evaluate_ranking(model, users, data.splits[split], catalog, RetrievalCollator(tokenizer.pad_token_id),
                            accelerator, cfg.eval.micro_batch_size, cfg.eval.ks)
