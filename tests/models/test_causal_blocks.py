from __future__ import annotations

import pytest
import torch

from translrec_dist.models.sequential.causal_blocks import FastDropout


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_fast_dropout_drops_its_share_keeps_the_mean_and_follows_the_seed(p):
    x = torch.ones(301, 333)  # not a multiple of 8 elements: the last draw is cut
    torch.manual_seed(0)
    y = FastDropout(p).train()(x)
    dropped = float((y == 0).float().mean())
    assert dropped == pytest.approx(round(p * 256) / 256, abs=0.005)
    assert float(y.mean()) == pytest.approx(1.0, abs=0.01)
    # every byte of the draws is uniform: no row band or byte position drops more than the others
    per_byte = (y.reshape(-1)[: 100_000].reshape(-1, 8) == 0).float().mean(0)
    assert float(per_byte.max() - per_byte.min()) < 0.03
    torch.manual_seed(0)
    assert torch.equal(FastDropout(p).train()(x), y)
    assert torch.equal(FastDropout(p).eval()(x), x)
