"""Run under ``accelerate launch`` with 2 CPU processes: loss and gradients of the sequence model with
cross-rank negatives (sampled softmax) and with the full-catalog softmax, next to one process holding the
concatenated batch (computed on rank 0). Ranks hold different numbers of target positions on purpose."""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from accelerate import Accelerator
from safetensors.torch import save_file

from translrec_dist.config.schema import SequenceConfig
from translrec_dist.models.sequential.model import SequenceModel
from translrec_dist.training.distributed import shutdown_process_group

P = -1
WINDOWS = torch.tensor([[0, 1, 2, 3, 4, 6], [P, P, P, 3, 1, 0],  # rank 0: 5 + 2 targets
                        [P, P, P, P, 2, 6], [P, 5, 4, 2, 1, 6]])  # rank 1: 1 + 4 targets (item 6 on both)
NEGATIVES = [torch.tensor([6, 3]), torch.tensor([0, 5, 5])]


def build(loss: str, gather: bool) -> SequenceModel:
    torch.manual_seed(0)
    cfg = SequenceConfig(item_repr="text+id", hidden=16, heads=2, inner=32, layers=1, dropout=0.0,
                         attn_dropout=0.0, adaptor_dropout=0.0, loss=loss)
    model = SequenceModel(cfg, num_items=7, max_history=5, text_dim=6, gather_negatives=gather)
    model.items.set_text_vectors(torch.randn(7, 6, generator=torch.Generator().manual_seed(3)))
    model.set_popularity(torch.tensor([5.0, 1, 1, 2, 3, 1, 4]))
    return model


def grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def main(out: str) -> None:
    accelerator = Accelerator()
    rank, world = accelerator.process_index, accelerator.num_processes
    result = {}
    for loss_kind in ("sampled", "full"):
        model = build(loss_kind, gather=True)
        local = WINDOWS[2 * rank: 2 * rank + 2]
        loss = model(local, NEGATIVES[rank] if loss_kind == "sampled" else None)
        loss.backward()
        g = grads(model)
        dist.all_reduce(g)  # what DDP does: average the ranks' gradients
        g /= world
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)
        result |= {f"{loss_kind}_loss": mean_loss.reshape(1) / world, f"{loss_kind}_grad": g,
                   f"{loss_kind}_local_loss": loss.detach().reshape(1)}
        if rank == 0:
            reference = build(loss_kind, gather=False)
            reference.global_batch_mean = False  # one process: no collective
            ref_loss = reference(WINDOWS, torch.cat(NEGATIVES) if loss_kind == "sampled" else None)
            ref_loss.backward()
            result |= {f"{loss_kind}_ref_loss": ref_loss.detach().reshape(1), f"{loss_kind}_ref_grad": grads(reference)}
    if rank == 0:
        save_file(result, out)
    shutdown_process_group()  # leaves without the exit-time abort that fails a launch (see its docstring)


if __name__ == "__main__":
    main(sys.argv[1])
