"""model.gradient_checkpointing, model.attn_implementation, and the planner reading any architecture offline."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import DebertaV2Config

from tests.conftest import FAST, TINY, run_cli
from translrec_dist.config.loader import load_config
from translrec_dist.data.tokenize import train_wordpiece
from translrec_dist.errors import ConfigError
from translrec_dist.models.pointwise.cross_encoder import build_model
from translrec_dist.training.planner import activation_bytes, model_size, plan

TEXTS = ["space robot laser", "love story paris", "crime boss heist", "war soldier front"] * 4
NO_DROPOUT = ["model.tiny.hidden_dropout_prob=0", "model.tiny.attention_probs_dropout_prob=0", "model.head_dropout=0"]


def gradients(cfg, tok) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model(cfg, tok).train()
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    model(**enc).square().mean().backward()
    return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}, model


def test_gradient_checkpointing_gives_the_same_gradients(tiny_cfg):
    tok = train_wordpiece(TEXTS, 120, 32)
    plain, _ = gradients(tiny_cfg(*NO_DROPOUT), tok)
    ckpt, model = gradients(tiny_cfg(*NO_DROPOUT, "model.gradient_checkpointing=true",
                                     "model.freeze_embeddings=true"), tok)
    assert model.encoder.is_gradient_checkpointing
    assert ckpt.keys() == {k for k in plain if "embeddings" not in k} and len(ckpt) > 10
    for name, grad in ckpt.items():  # frozen embeddings: non-reentrant checkpointing still reaches the layers
        torch.testing.assert_close(grad, plain[name], rtol=1e-5, atol=1e-7)


def test_attn_implementation_is_whatever_transformers_accepts(tiny_cfg):
    tok = train_wordpiece(TEXTS, 120, 32)
    for accepted in ("eager", "flex_attention"):
        model = build_model(tiny_cfg(f"model.attn_implementation={accepted}"), tok)
        assert model.encoder.config._attn_implementation == accepted
    with pytest.raises(ConfigError, match=r"model.attn_implementation='nonsense' cannot be used.*not supported"):
        build_model(tiny_cfg("model.attn_implementation=nonsense"), tok)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="model.attn_implementation='flash_attention_2'"):
            build_model(tiny_cfg("model.attn_implementation=flash_attention_2"), tok)


def deberta_dir(root):
    config = DebertaV2Config(vocab_size=128100, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                             intermediate_size=3072, max_position_embeddings=512, relative_attention=True,
                             position_buckets=256, pos_att_type=["p2c", "c2p"], type_vocab_size=0,
                             share_att_key=True, position_biased_input=False, norm_rel_ebd="layer_norm")
    config.save_pretrained(str(root))
    return root


def test_planner_reads_an_architecture_outside_its_table(tmp_path):
    d = deberta_dir(tmp_path / "deberta")
    cfg = load_config(TINY, ["model.tiny=null", f"model.name_or_path={d}", "data.max_length=128"])
    size = model_size(cfg)
    assert size.hidden == 768 and size.layers == 12
    assert 180e6 < size.params < 190e6  # DeBERTa-v3-base: 184M with its 128k vocabulary


@pytest.mark.slow
def test_planner_reads_the_hf_cache_offline(tmp_path):
    snapshot = tmp_path / "hub" / "models--microsoft--deberta-v3-base" / "snapshots" / ("0" * 40)
    deberta_dir(snapshot)
    (tmp_path / "hub" / "models--microsoft--deberta-v3-base" / "refs").mkdir()
    (tmp_path / "hub" / "models--microsoft--deberta-v3-base" / "refs" / "main").write_text("0" * 40)
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    proc = run_cli(["plan", str(TINY), "model.tiny=null", "model.name_or_path=microsoft/deberta-v3-base",
                    "data.max_length=128"], env=env)
    assert "model microsoft/deberta-v3-base (task=ctr): 183.8M" in proc.stdout
    proc = run_cli(["plan", str(TINY), "model.tiny=null", "model.name_or_path=nobody/unknown-model"], env=env,
                   check=False)
    assert proc.returncode == 2 and "Hugging Face cache" in proc.stderr and "Traceback" not in proc.stderr


def test_planner_accounts_for_gradient_checkpointing():
    base = ["model.tiny=null", "model.name_or_path=bert-base-uncased", "data.max_length=512",
            "train.micro_batch_size=32", "train.precision=bf16"]
    full, ckpt = (load_config(TINY, [*base, f"model.gradient_checkpointing={v}"]) for v in ("false", "true"))
    size = model_size(full)
    s, b, h, layers = 512, 32, 768, 12
    assert activation_bytes(full, size, True) == 34 * s * b * h * layers
    assert activation_bytes(ckpt, size, True) == 2 * s * b * h * layers + 34 * s * b * h
    # BERT-base at micro-batch 128 fits a 24 GB GPU under DDP only with checkpointing
    big = [*base, "train.micro_batch_size=128"]
    full, ckpt = (load_config(TINY, [*big, f"model.gradient_checkpointing={v}"]) for v in ("false", "true"))
    ddp_total = [next(r.total for r in plan(c, 1, 1, 24e9)[1] if r.distributed == "ddp") for c in (full, ckpt)]
    assert ddp_total[0] > 0.9 * 24e9 > ddp_total[1]
    assert plan(ckpt, 1, 1, 24e9)[2].distributed == "ddp"


@pytest.mark.slow
def test_config_dry_run_prints_world_batch_and_deepspeed(tmp_path):
    import yaml

    proc = run_cli(["config", str(TINY), *FAST, "train.distributed=zero2", "train.grad_accum=2", "--nproc", "4"])
    cfg, launch, ds = yaml.safe_load_all(proc.stdout)
    assert cfg["train"]["distributed"] == "zero2" and cfg["model"]["tiny"]["hidden_size"] == 32
    assert launch["world_size"] == 4 and launch["global_batch"] == 8 * 2 * 4
    assert ds["train_batch_size"] == 64 and ds["gradient_accumulation_steps"] == 2
    assert ds["zero_optimization"]["stage"] == 2
    proc = run_cli(["config", str(TINY), *FAST, "train.global_batch_size=10"], env={"WORLD_SIZE": "2"}, check=False)
    assert proc.returncode == 2 and "world_size=2" in proc.stderr
    proc = run_cli(["--version"])
    assert proc.stdout.startswith("translrec 0.")
    assert json.dumps(None) in run_cli(["config", str(TINY)]).stdout.splitlines()[-1]
