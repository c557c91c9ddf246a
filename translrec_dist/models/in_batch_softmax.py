"""The in-batch softmax both towers train with (the retrieval bi-encoder and the sequential model): each query's
own target against every candidate of the (global) batch, with accidental hits masked.

Candidates are this rank's targets (one per query, in order), then any sampled negatives. With ``gather``, the
candidates of every rank join (``gather_candidates``); ``torch.distributed.nn.all_gather`` keeps the graph, so
each rank's vectors receive the gradient of every rank's loss and the summed gradient equals that of one process
holding the concatenated batch. A candidate that is the same item as a query's target (another query's target,
or a sampled negative) is not a negative for it: its logit is masked ("accidental hits"). ``log_q``: subtract
the log sampling probability of each candidate (Yi et al. 2019) when candidates are sampled by popularity.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F


def world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def in_batch_softmax(queries: torch.Tensor, targets: torch.Tensor, candidates: torch.Tensor,
                     candidate_vectors: torch.Tensor, score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                     gather: bool = False, log_q: torch.Tensor | None = None) -> torch.Tensor:
    """[len(queries)] cross-entropy of each query's target. ``targets``: the item id of each query's target;
    ``candidates``/``candidate_vectors``: ids and vectors, this rank's targets first; ``score(queries, vectors)``
    -> logits."""
    offset = 0
    if gather and world()[1] > 1:
        candidates, candidate_vectors, offset = gather_candidates(candidates, candidate_vectors, len(queries))
    logits = score(queries, candidate_vectors)
    if log_q is not None:
        logits = logits - log_q[candidates]
    own = torch.arange(len(queries), device=logits.device) + offset
    accidental = targets.unsqueeze(1) == candidates.unsqueeze(0)
    accidental[torch.arange(len(queries)), own] = False
    logits = logits.masked_fill(accidental, torch.finfo(logits.dtype).min)
    return F.cross_entropy(logits, own, reduction="none")


def gather_candidates(cand: torch.Tensor, cand_vectors: torch.Tensor, n_targets: int):
    """All ranks' candidates, ordered [targets of rank 0.., then the other candidates of rank 0..], with the
    gradient of every rank's loss flowing back to each rank's vectors (torch.distributed.nn.all_gather),
    and the offset of this rank's targets. Ranks may hold different numbers of targets, so tensors are padded
    to the largest and trimmed."""
    from torch.distributed.nn.functional import all_gather

    rank, size = world()
    n = torch.tensor([n_targets, len(cand)], device=cand.device)
    sizes = [torch.zeros_like(n) for _ in range(size)]
    dist.all_gather(sizes, n)
    longest = max(int(s[1]) for s in sizes)
    pad = longest - len(cand)
    cand_p = torch.cat([cand, cand.new_zeros(pad)])
    vec_p = torch.cat([cand_vectors, cand_vectors.new_zeros(pad, cand_vectors.shape[1])])
    all_cand = [torch.zeros_like(cand_p) for _ in range(size)]
    dist.all_gather(all_cand, cand_p)
    all_vec = all_gather(vec_p.contiguous())
    tgt_i = [all_cand[r][: int(sizes[r][0])] for r in range(size)]
    tgt_v = [all_vec[r][: int(sizes[r][0])] for r in range(size)]
    neg_i = [all_cand[r][int(sizes[r][0]): int(sizes[r][1])] for r in range(size)]
    neg_v = [all_vec[r][int(sizes[r][0]): int(sizes[r][1])] for r in range(size)]
    offset = sum(int(sizes[r][0]) for r in range(rank))
    return torch.cat(tgt_i + neg_i), torch.cat(tgt_v + neg_v), offset
