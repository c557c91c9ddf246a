"""task=sequential's fine-tuning options: config checks with clear errors, LoRA on the top layers over cached
lower-layer states (exported merged), the frozen warm-up's learning rates, and the distilled cold-item head."""

from __future__ import annotations

import pytest
import torch

from translrec_dist.errors import ConfigError
from translrec_dist.tasks.sequential import build_text_encoder, check_sequence_config

SEQ = ["task=sequential", "model.sequence.hidden=16", "model.sequence.inner=32", "model.sequence.layers=1",
       "data.max_history=6"]


@pytest.mark.parametrize("overrides, key", [
    (["model.sequence.encoder_lr=1e-4"], "model.sequence.encoder_lr"),
    (["model.sequence.encoder_frozen_steps=5"], "model.sequence.encoder_frozen_steps"),
    (["model.sequence.encode_items_per_step=64"], "model.sequence.encode_items_per_step"),
    (["model.sequence.encoder=full", "model.sequence.encode_items_per_step=64"],
     "model.sequence.encode_items_per_step"),
    (["model.sequence.encoder=top_layers", "model.sequence.layer_cache=false",
      "model.sequence.encode_items_per_step=64"], "model.sequence.encode_items_per_step"),
    (["model.sequence.distill=1.0"], "model.sequence.distill"),
    (["model.sequence.item_repr=text+id", "model.sequence.cold_scale=0.8"], "model.sequence.cold_scale"),
    (["model.sequence.encoder=full", "model.sequence.encoder_dropout=true"], "model.sequence.encoder_dropout"),
])
def test_options_that_do_not_apply_are_config_errors_naming_the_field(tiny_cfg, overrides, key):
    with pytest.raises(ConfigError, match=key):
        check_sequence_config(tiny_cfg(*SEQ, *overrides))


def test_negative_distill_weight_is_refused_when_the_config_loads(tiny_cfg):
    with pytest.raises(ConfigError, match="distill"):
        tiny_cfg(*SEQ, "model.sequence.distill=-1")


def test_training_every_layer_with_the_cache_is_refused(tiny_cfg):
    cfg = tiny_cfg(*SEQ, "model.sequence.encoder=top_layers", "model.sequence.train_layers=2")  # tiny: 2 layers
    with pytest.raises(ConfigError, match="train_layers leaves 0 frozen layers"):
        build_text_encoder(cfg, ["a b", "c d e"])


def test_lora_adapters_sit_on_the_top_layer_only_and_the_export_merges_them(tiny_cfg):
    from translrec_dist.models.transfer import merged_encoder
    from translrec_dist.tasks.sequential import item_encoder

    texts = ["red apple pie", "green tea", "blue cheese sauce with herbs"]
    cfg = tiny_cfg(*SEQ, "model.sequence.encoder=lora", "model.sequence.train_layers=1")
    items = build_text_encoder(cfg, texts)
    names = [n for n, p in items.encoder.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n and ".layer.1." in n for n in names)
    assert items.lower is not None  # layer 0 is frozen: its states are cached
    before = items.encode_all()
    with torch.no_grad():
        for p in items.trainable():
            p.add_(0.1)
    after = items.encode_all()
    assert not torch.allclose(before, after)  # the adapters change the vectors
    plain, state = merged_encoder(items.encoder, items.encoder.state_dict())
    assert not any("lora_" in k for k in state)
    reference, tokenizer = item_encoder(cfg, texts)
    reference.load_state_dict(state)
    reference.eval()
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        merged = reference(**batch).last_hidden_state[:, 0]  # pooling=cls
    torch.testing.assert_close(merged, after, rtol=1e-3, atol=2e-3)  # fp16 cached states on the lower path


def test_frozen_warm_up_keeps_the_encoder_learning_rate_at_zero_then_uses_encoder_lr(tiny_cfg):
    from translrec_dist.training.optim import build_optimizer, build_scheduler

    cfg = tiny_cfg(*SEQ, "model.sequence.encoder=top_layers", "model.sequence.train_layers=1",
                   "model.sequence.encoder_lr=1e-4", "model.sequence.encoder_frozen_steps=3", "train.lr=1e-3",
                   "train.warmup_ratio=0", "train.schedule=constant")
    from translrec_dist.data.sequences import build_sequence_data
    from translrec_dist.data.stages import read_source
    from translrec_dist.tasks.sequential import build_sequential

    data = build_sequence_data(*read_source(cfg), cfg)
    model = build_sequential(cfg, data, torch.zeros(data.num_items, 32))
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, 10)
    encoder_ids = {id(p) for p in model.text_items.trainable()}
    kinds = {("encoder" if id(g["params"][0]) in encoder_ids else "rest"): g for g in optimizer.param_groups}
    lrs = []
    for _ in range(5):
        lrs.append((kinds["encoder"]["lr"], kinds["rest"]["lr"]))
        optimizer.step()
        scheduler.step()
    assert lrs == [(0.0, 1e-3)] * 3 + [(1e-4, 1e-3)] * 2


def test_distilled_head_scores_items_without_an_id_vector_and_learns_the_warm_vectors():
    from translrec_dist.config.schema import SequenceConfig
    from translrec_dist.models.sequential.model import SequenceModel

    torch.manual_seed(0)
    cfg = SequenceConfig(item_repr="text+id", hidden=8, heads=2, inner=16, layers=1, dropout=0.0,
                         attn_dropout=0.0, distill=1.0)
    model = SequenceModel(cfg, num_items=6, max_history=4, text_dim=5)
    model.items.set_text_vectors(torch.randn(6, 5))
    model.set_popularity(torch.tensor([3.0, 2, 1, 1, 2, 0]))  # item 5: no training interaction (cold)
    model.eval()
    vectors = model.catalog()
    torch.testing.assert_close(vectors[5], model.items.cold(model.items.text[5]))  # cold: the distilled head
    warm = model.items.adaptor(model.items.text[:5]) + model.items.ids.weight[1:6]
    torch.testing.assert_close(vectors[:5], warm)
    model.items.cold_scale = 0.5  # calibration (bench/cold_calibration.py): cold vectors scaled, warm ones kept
    scaled = model.catalog()
    torch.testing.assert_close(scaled[5], 0.5 * vectors[5])
    torch.testing.assert_close(scaled[:5], vectors[:5])
    model.items.cold_scale = 1.0
    model.train()
    optimizer = torch.optim.Adam(model.items.cold.parameters(), lr=0.05)
    first = None
    for _ in range(60):
        loss = model.items.distill_loss(model.items.text, model.trained)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.2 * first
    assert model.items.ids.weight.grad is None  # the ID side is the teacher: distillation does not move it
