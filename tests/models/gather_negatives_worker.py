"""Run under ``accelerate launch`` with 2 CPU processes: the loss and gradients of the bi-encoder with
cross-rank negatives, next to those of one process holding the concatenated batch (computed on rank 0)."""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from accelerate import Accelerator
from safetensors.torch import save_file
from transformers import AutoModel, BertConfig

from translrec_dist.models.retrieval.bi_encoder import BiEncoder
from translrec_dist.training.distributed import shutdown_process_group

PER_RANK = 4


def build() -> BiEncoder:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    return BiEncoder(AutoModel.from_config(config), pooling="mean", temperature=0.1, gather_negatives=True)


def global_batch(n: int) -> dict:
    g = torch.Generator().manual_seed(1)
    batch = {"input_ids": torch.randint(5, 50, (n, 7), generator=g),
             "attention_mask": torch.ones(n, 7, dtype=torch.long),
             "item_input_ids": torch.randint(5, 50, (n, 5), generator=g),
             "item_attention_mask": torch.ones(n, 5, dtype=torch.long)}
    batch["attention_mask"][::3, 5:] = 0
    # item 2 appears on both ranks: the copy on the other rank must be masked, not used as a negative
    batch["item_index"] = torch.tensor([0, 1, 2, 3, 2, 5, 6, 7][:n])
    return batch


def grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def main(out: str) -> None:
    accelerator = Accelerator()
    rank, world = accelerator.process_index, accelerator.num_processes
    batch = global_batch(PER_RANK * world)
    model = build()
    local = {k: v[rank * PER_RANK:(rank + 1) * PER_RANK] for k, v in batch.items()}
    loss = model(**local)
    loss.backward()
    g = grads(model)
    dist.all_reduce(g)  # what DDP does: average the ranks' gradients
    g /= world
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    mean_loss /= world
    if rank == 0:
        reference = build()
        reference.gather_negatives = False
        ref_loss = reference(**batch)
        ref_loss.backward()
        save_file({"loss": mean_loss.reshape(1), "grad": g, "ref_loss": ref_loss.detach().reshape(1),
                   "ref_grad": grads(reference), "local_loss": loss.detach().reshape(1)}, out)
    shutdown_process_group()  # leaves without the exit-time abort that fails a launch (see its docstring)


if __name__ == "__main__":
    main(sys.argv[1])
