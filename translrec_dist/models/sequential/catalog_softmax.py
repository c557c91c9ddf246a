"""Softmax cross-entropy of states against a whole catalog of item vectors, in row chunks.

The sequential task's full-catalog loss is most of a training step on a CPU: with ``F.cross_entropy`` every
step writes and reads several [targets x catalog] tensors (the logits, their log-softmax, a zero-filled
gradient, its scatter), each far larger than the caches. Here a chunk of rows is scored, reduced to its
log-sum-exp and dropped; the backward pass scores the chunk again and turns it into its gradient while it is
still in cache. One more matrix product, much less memory traffic: the same loss and gradients as
``F.cross_entropy(states @ vectors.T, targets, reduction="none")``.

Under autocast the products run in the autocast dtype (bf16 on CPUs with native bf16, or on GPUs) and the
softmax in fp32.
"""

from __future__ import annotations

import torch

CHUNK_ROWS = 256  # a [256 x catalog] fp32 block of a few-thousand-item catalog stays in a core's L2 cache


def catalog_cross_entropy(states: torch.Tensor, vectors: torch.Tensor, targets: torch.Tensor,
                          chunk: int = CHUNK_ROWS) -> torch.Tensor:
    """Per-row loss ``logsumexp(states @ vectors.T) - states . vectors[targets]`` ([N]), fp32."""
    device_type = states.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        states, vectors = states.to(dtype), vectors.to(dtype)
    with torch.autocast(device_type, enabled=False):
        return _ChunkedSoftmaxLoss.apply(states, vectors, targets, chunk)


class _ChunkedSoftmaxLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, states, vectors, targets, chunk):
        lse = torch.empty(len(states), dtype=torch.float32, device=states.device)
        for i in range(0, len(states), chunk):
            lse[i:i + chunk] = torch.logsumexp((states[i:i + chunk] @ vectors.T).float(), dim=1)
        target_logits = (states.float() * vectors[targets].float()).sum(-1)
        ctx.save_for_backward(states, vectors, targets, lse)
        ctx.chunk = chunk
        return lse - target_logits

    @staticmethod
    def backward(ctx, grad):
        states, vectors, targets, lse = ctx.saved_tensors
        grad_states = torch.empty_like(states)
        grad_vectors = torch.zeros(vectors.shape, dtype=torch.float32, device=vectors.device)
        grad = grad.float()
        for i in range(0, len(states), ctx.chunk):
            s, g = states[i:i + ctx.chunk], grad[i:i + ctx.chunk]
            # d loss / d logits = g * (softmax - one_hot(target)), built in place on the chunk's scores
            p = (s @ vectors.T).float().sub_(lse[i:i + ctx.chunk, None]).exp_().mul_(g[:, None])
            p[torch.arange(len(s), device=p.device), targets[i:i + ctx.chunk]] -= g
            p = p.to(states.dtype)
            grad_states[i:i + ctx.chunk] = p @ vectors
            grad_vectors += (p.T @ s).float()
        return grad_states, grad_vectors.to(vectors.dtype), None, None
