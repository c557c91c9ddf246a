"""AdamW with parameter groups: no weight decay on biases and LayerNorm, an optional head learning rate and
layer-wise decay of the encoder's learning rate (train.layer_lr_decay); the schedule around it."""

from __future__ import annotations

import torch
from transformers import get_scheduler

from translrec_dist.models.transfer import encoder_depth, layer_lr_scale


def build_optimizer(cfg, model) -> torch.optim.Optimizer:
    t = cfg.train
    num_layers = encoder_depth(model)
    groups: dict[tuple, list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr = (t.head_lr or t.lr) if name.startswith("head.") else t.lr * layer_lr_scale(name, num_layers,
                                                                                        t.layer_lr_decay)
        wd = 0.0 if p.ndim < 2 else t.weight_decay
        groups.setdefault((lr, wd), []).append(p)
    return torch.optim.AdamW([{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()],
                             lr=t.lr, foreach=True)


def build_scheduler(cfg, optimizer, total_steps: int):
    t = cfg.train
    return get_scheduler(t.schedule, optimizer, num_warmup_steps=int(t.warmup_ratio * total_steps),
                         num_training_steps=total_steps)
