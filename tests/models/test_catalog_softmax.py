from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from translrec_dist.models.sequential.catalog_softmax import catalog_cross_entropy


def inputs(n=37, items=23, dim=8):
    g = torch.Generator().manual_seed(0)
    states = torch.randn(n, dim, generator=g, requires_grad=True)
    vectors = torch.randn(items, dim, generator=g, requires_grad=True)
    return states, vectors, torch.randint(0, items, (n,), generator=g), torch.rand(n, generator=g)


@pytest.mark.parametrize("chunk", [5, 37, 1000])  # chunks that do not divide the rows, one chunk, one partial chunk
def test_chunked_loss_and_gradients_equal_cross_entropy_over_the_catalog(chunk):
    states, vectors, targets, weights = inputs()
    ref = F.cross_entropy(states @ vectors.T, targets, reduction="none")
    (ref * weights).sum().backward()
    ref_grads = states.grad.clone(), vectors.grad.clone()
    states.grad = vectors.grad = None
    got = catalog_cross_entropy(states, vectors, targets, chunk=chunk)
    (got * weights).sum().backward()  # a non-uniform upstream gradient: each row's weight must reach its row
    torch.testing.assert_close(got, ref.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(states.grad, ref_grads[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(vectors.grad, ref_grads[1], rtol=1e-5, atol=1e-6)


def test_under_bf16_autocast_the_products_are_bf16_and_the_loss_stays_close():
    states, vectors, targets, _ = inputs()
    ref = F.cross_entropy(states @ vectors.T, targets, reduction="none")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = catalog_cross_entropy(states, vectors, targets, chunk=8)
    assert got.dtype == torch.float32
    got.sum().backward()
    assert states.grad.dtype == torch.float32 and vectors.grad.dtype == torch.float32
    torch.testing.assert_close(got, ref.detach(), rtol=0.05, atol=0.05)
    assert not torch.equal(got, ref.detach())  # bf16 products really ran
