"""Run under ``accelerate launch`` with 2 CPU processes: the sequence model whose item encoder fine-tunes its top
layer over cached lower-layer states (text + ID, full-catalog softmax). Each rank holds its own windows; the
gradients averaged over the ranks (what DDP does) are compared with one process holding the concatenated batch,
computed on rank 0, with every item of the global batch re-encoded and with a sample of them. The catalog
refresh split across the ranks is compared with one process encoding it all."""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from accelerate import Accelerator
from safetensors.torch import save_file

from tests.models.test_layer_cache import PAD, catalog, tiny_bert
from translrec_dist.config.schema import SequenceConfig
from translrec_dist.models.encoding import as_table
from translrec_dist.models.sequential.layer_cache import compute_lower_states
from translrec_dist.models.sequential.model import SequenceModel
from translrec_dist.models.sequential.trainable_items import TextEncoderItems
from translrec_dist.training.distributed import shutdown_process_group

P = -1
WINDOWS = torch.tensor([[0, 1, 2, 3, 4, 6], [P, P, P, 3, 1, 0],  # rank 0: 5 + 2 targets
                        [P, P, P, P, 2, 8], [P, 5, 4, 2, 7, 6]])  # rank 1: 1 + 4 targets (items 2, 4, 6 on both)


def build(items_per_step: int | None, alone: bool) -> SequenceModel:
    encoder, tokens = tiny_bert(), catalog()
    lower = compute_lower_states(encoder, 2, as_table(tokens), PAD)
    items = TextEncoderItems(encoder, tokens, PAD, "mean", "top_layers", 1, lower, items_per_step)
    items.across_ranks = not alone
    torch.manual_seed(0)
    cfg = SequenceConfig(item_repr="text+id", encoder="top_layers", train_layers=1, hidden=16, heads=2, inner=32,
                         layers=1, dropout=0.0, attn_dropout=0.0, loss="full")
    model = SequenceModel(cfg, num_items=9, max_history=5, text_dim=16)
    model.attach_text_encoder(items)
    model.items.set_text_vectors(items.encode_all())
    model.set_popularity(torch.tensor([5.0, 1, 1, 2, 3, 1, 4, 2, 1]))
    model.global_batch_mean = not alone
    return model.train()


def grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def encoder_grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.text_items.trainable()])


def main(out: str) -> None:
    accelerator = Accelerator()
    rank, world = accelerator.process_index, accelerator.num_processes
    result = {}
    for name, sample in (("all", None), ("sample", 3)):
        model = build(sample, alone=False)
        loss = model(WINDOWS[2 * rank: 2 * rank + 2])
        loss.backward()
        g, ge = grads(model), encoder_grads(model)
        for t in (g, ge):
            dist.all_reduce(t)
            t /= world
        result |= {f"{name}_grad": g, f"{name}_encoder_grad": ge, f"{name}_refresh": model.text_items.encode_all(),
                   f"{name}_local_loss": loss.detach().reshape(1)}
        if rank == 0:
            reference = build(sample, alone=True)
            ref_loss = reference(WINDOWS)
            ref_loss.backward()
            result |= {f"{name}_ref_grad": grads(reference), f"{name}_ref_encoder_grad": encoder_grads(reference),
                       f"{name}_ref_refresh": reference.text_items.encode_all(),
                       f"{name}_ref_loss": ref_loss.detach().reshape(1)}
    if rank == 0:
        save_file(result, out)
    shutdown_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
