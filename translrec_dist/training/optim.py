"""AdamW with parameter groups: no weight decay on biases and LayerNorm, an optional head learning rate and
layer-wise decay of the encoder's learning rate (train.layer_lr_decay); the schedule around it."""

from __future__ import annotations

import torch
from transformers import get_scheduler

from translrec_dist.models.transfer import encoder_depth, layer_lr_scale


def build_optimizer(cfg, model) -> torch.optim.Optimizer:
    t = cfg.train
    num_layers = encoder_depth(model)
    # A model whose encoder sits beside other trained parts (task=sequential's item encoder) may name it, with
    # its own learning rate and a number of first steps during which it does not move (a frozen warm-up).
    prefix = getattr(model, "encoder_prefix", None)
    encoder_lr, frozen = getattr(model, "encoder_lr", None), getattr(model, "encoder_frozen_steps", 0)
    groups: dict[tuple, list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr = (t.head_lr or t.lr) if name.startswith("head.") else t.lr * layer_lr_scale(name, num_layers,
                                                                                        t.layer_lr_decay)
        in_encoder = bool(prefix) and name.startswith(prefix)
        if in_encoder and encoder_lr:
            lr = encoder_lr
        wd = 0.0 if p.ndim < 2 else t.weight_decay
        groups.setdefault((lr, wd, frozen if in_encoder else 0), []).append(p)
    return torch.optim.AdamW([{"params": ps, "lr": lr, "weight_decay": wd, "frozen_steps": f}
                              for (lr, wd, f), ps in groups.items()], lr=t.lr, foreach=True)


def build_scheduler(cfg, optimizer, total_steps: int):
    t = cfg.train
    scheduler = get_scheduler(t.schedule, optimizer, num_warmup_steps=int(t.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    for i, group in enumerate(optimizer.param_groups):
        if group.get("frozen_steps"):  # learning rate 0 until then: not even weight decay moves these weights
            scheduler.lr_lambdas[i] = frozen_first(scheduler.lr_lambdas[i], group["frozen_steps"])
            group["lr"] = scheduler.base_lrs[i] * scheduler.lr_lambdas[i](scheduler.last_epoch)  # step 0 as well
    return scheduler


def frozen_first(factor, steps: int):
    return lambda step: factor(step) if step >= steps else 0.0
