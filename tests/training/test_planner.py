"""The memory planner against DeepSpeed's own estimators, without downloading any model."""

from __future__ import annotations

import pytest
from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

from tests.conftest import TINY
from translrec_dist.config.loader import load_config
from translrec_dist.training.planner import estimate, format_plan, model_size, parse_bytes, plan


def bert(name: str, *more: str):
    return load_config(TINY, ["model.tiny=null", f"model.name_or_path={name}", "train.precision=bf16",
                              "data.max_length=128", *more])


def test_parameter_counts_without_download():
    base = model_size(bert("bert-base-uncased"))
    # 109,482,240 in the published checkpoint, minus the unused pooler (768*768+768), plus the 769-weight head.
    assert base.params == 109_482_240 - 590_592 + 769
    assert base.largest_layer == 30522 * 768  # word embeddings
    assert model_size(bert("bert-large-uncased")).params == 335_141_888 - 1_049_600 + 1025


def test_tiny_count_matches_the_real_model(tiny_cfg):
    from transformers import BertConfig

    from translrec_dist.models.encoders import build_encoder
    from translrec_dist.models.pointwise.cross_encoder import CrossEncoder

    cfg = tiny_cfg()
    real = CrossEncoder(build_encoder(cfg))
    assert isinstance(real.encoder.config, BertConfig)
    assert model_size(cfg).params == sum(p.numel() for p in real.parameters())


@pytest.mark.parametrize("name", ["bert-base-uncased", "bert-large-uncased"])
@pytest.mark.parametrize("gpus,nodes", [(1, 1), (8, 1), (8, 4)])
def test_model_states_match_deepspeed_estimators(name, gpus, nodes):
    size = model_size(bert(name))
    psi, big = size.params, size.largest_layer

    def states(distributed, offload):
        e = estimate(size, distributed, offload, gpus, nodes, mixed=True, activations=0.0)
        return e.params + e.grads + e.optimizer, e.cpu_per_node

    for offload in (False, True):
        cpu, gpu = estimate_zero2_model_states_mem_needs(psi, gpus, nodes, cpu_offload=offload)
        assert states("zero2", "optimizer" if offload else "none") == pytest.approx((gpu, cpu), rel=1e-6)
    for offload, params, ours in ((False, False, "none"), (True, False, "optimizer"), (True, True, "all")):
        cpu, gpu, _ = estimate_zero3_model_states_mem_needs(psi, big, gpus, nodes, cpu_offload=offload,
                                                            cpu_offload_params=params, zero_init=False)
        assert states("zero3", ours) == pytest.approx((gpu, cpu), rel=1e-6)


def test_recommends_the_cheapest_strategy_that_fits():
    cfg = bert("bert-large-uncased", "train.micro_batch_size=32")
    _, rows, best = plan(cfg, 8, 1, parse_bytes("80GB"))
    assert best is not None and (best.distributed, best.offload) == ("ddp", "none")
    _, _, best = plan(cfg, 8, 1, parse_bytes("8GB"))
    assert best is not None and best.distributed != "ddp" and best.total <= 0.9 * 8e9
    ddp = next(r for r in rows if r.distributed == "ddp")
    assert ddp.params + ddp.grads + ddp.optimizer == 16 * model_size(cfg).params
    text = format_plan(cfg, 8, 2, parse_bytes("80GB"))
    assert "recommended: train.distributed=" in text and "zero3" in text
    assert "nothing fits" in format_plan(cfg, 1, 1, parse_bytes("1GB"))


def test_bad_planner_input(tiny_cfg):
    from translrec_dist.errors import ConfigError

    with pytest.raises(ConfigError, match="give a size such as 80GB"):
        parse_bytes("lots")
    assert parse_bytes("40GiB") == 40 * 2**30
    with pytest.raises(ConfigError, match="not one of the built-in architectures"):
        model_size(bert("some-org/unknown-model"))


def test_the_plan_sizes_each_task_s_own_model(tiny_cfg):
    """Not a cross-encoder for every task: two towers count twice, a frozen sequential encoder not at all."""
    from translrec_dist.program import task_for
    from translrec_dist.tasks.sequential import SequentialTask

    ctr = tiny_cfg()
    encoder = model_size(ctr, task_for(ctr)).params - ctr.model.tiny.hidden_size - 1
    two = tiny_cfg("task=retrieval", "model.share_towers=false")
    assert model_size(two, task_for(two)).params == 2 * encoder
    seq = tiny_cfg("task=sequential", "model.sequence.hidden=16", "model.sequence.inner=32")
    frozen = model_size(seq, task_for(seq)).params
    assert 0 < frozen < encoder
    full = tiny_cfg("task=sequential", "model.sequence.hidden=16", "model.sequence.inner=32",
                    "model.sequence.encoder=full")
    assert model_size(full, task_for(full)).params == frozen + encoder
    assert isinstance(task_for(seq), SequentialTask) and "task=sequential" in format_plan(
        seq, 1, 1, parse_bytes("80GB"), task_for(seq))
    mlm = tiny_cfg("task=mlm")
    assert model_size(mlm, task_for(mlm)).params > encoder  # the LM head's transform and bias
