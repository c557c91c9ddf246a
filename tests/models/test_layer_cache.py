"""The frozen lower layers' cached states (models.layer_cache) and the top-layers item encoder over them."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel

from translrec_dist.models.encoders import pool
from translrec_dist.models.encoding import as_table
from translrec_dist.models.sequential.layer_cache import (
    cached_lower_states,
    compute_lower_states,
    frozen_fingerprint,
)
from translrec_dist.models.sequential.trainable_items import TextEncoderItems

PAD = 0


def tiny_bert(seed: int = 0, layers: int = 3) -> BertModel:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    return BertModel(config, add_pooling_layer=False).eval()


def catalog(n: int = 9, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):  # lengths 3..11: batches need padding
        body = torch.randint(5, 50, (1 + (i * 5) % 9,), generator=g).tolist()
        rows.append([2, *body, 3])
    return {"input_ids": rows, "token_type_ids": [[0] * len(r) for r in rows]}


def full_encoder_vectors(encoder, tokens, pooling: str) -> torch.Tensor:
    out = []
    for ids in tokens["input_ids"]:  # one item at a time: no padding at all
        x = torch.tensor([ids])
        with torch.no_grad():
            out.append(pool(encoder(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state,
                            torch.ones_like(x), pooling))
    return torch.cat(out)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_top_layers_over_cached_states_equal_the_whole_encoder(pooling):
    encoder, tokens = tiny_bert(), catalog()
    expected = full_encoder_vectors(encoder, tokens, pooling)
    lower = compute_lower_states(encoder, 2, as_table(tokens), PAD, batch_size=4, dtype=torch.float32)
    items = TextEncoderItems(encoder, tokens, PAD, pooling, "top_layers", 1, lower)
    torch.testing.assert_close(items.encode_all(batch_size=4), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(items.encode(torch.tensor([7, 0, 3])), expected[[7, 0, 3]], rtol=1e-4, atol=1e-5)
    # the shipped fp16 states: close to the fp32 path (half precision of the stored states only)
    half = TextEncoderItems(encoder, tokens, PAD, pooling, "top_layers", 1,
                            compute_lower_states(encoder, 2, as_table(tokens), PAD))
    torch.testing.assert_close(half.encode_all(), expected, rtol=2e-2, atol=2e-2)


def count_forwards(modules) -> list[int]:
    calls = [0]
    for m in modules:
        m.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_training_steps_and_refresh_never_run_the_frozen_layers():
    encoder, tokens = tiny_bert(), catalog()
    lower = compute_lower_states(encoder, 2, as_table(tokens), PAD)
    items = TextEncoderItems(encoder, tokens, PAD, "mean", "top_layers", 1, lower).train()
    frozen = count_forwards([encoder.embeddings, *encoder.encoder.layer[:2]])
    top = count_forwards([encoder.encoder.layer[2]])
    optimizer = torch.optim.SGD(items.trainable(), lr=0.1)
    cached = items.encode_all()
    for step in range(3):
        text = items.with_fresh(cached, torch.tensor([[step, 4, -1], [5, 6, step]]))
        text.pow(2).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    refreshed = items.encode_all()
    assert frozen[0] == 0  # never recomputed
    assert top[0] > 0 and not torch.allclose(refreshed, cached)  # the top layer ran, trained and refreshed
    assert all(p.grad is None or not p.requires_grad for p in encoder.encoder.layer[0].parameters())
    assert [n for n, p in encoder.named_parameters() if p.requires_grad] == \
        [n for n, _ in encoder.encoder.layer[2].named_parameters(prefix="encoder.layer.2")]


def test_a_sample_of_the_batch_items_is_re_encoded_the_rest_keep_cached_vectors():
    encoder, tokens = tiny_bert(), catalog()
    items = TextEncoderItems(encoder, tokens, PAD, "mean", "top_layers", 1,
                             compute_lower_states(encoder, 2, as_table(tokens), PAD), items_per_step=2)
    cached = torch.zeros(9, 16)
    text = items.with_fresh(cached, torch.tensor([[1, 2, 3, 4, -1]]))
    fresh = text.abs().sum(1) > 0
    assert int(fresh.sum()) == 2 and set(torch.nonzero(fresh).squeeze(1).tolist()) <= {1, 2, 3, 4}
    assert torch.equal(text, items.with_fresh(cached, torch.tensor([[1, 2, 3, 4, -1]])))  # same sample again


def test_frozen_warm_up_runs_no_encoder_but_gives_every_trainable_parameter_a_zero_gradient():
    encoder, tokens = tiny_bert(), catalog()
    items = TextEncoderItems(encoder, tokens, PAD, "mean", "top_layers", 1,
                             compute_lower_states(encoder, 2, as_table(tokens), PAD), frozen_steps=2)
    calls = count_forwards([encoder.encoder.layer[2]])
    cached = torch.randn(9, 16)
    items.with_fresh(cached, torch.tensor([[1, 2]])).sum().backward()
    assert calls[0] == 0 and all(p.grad is not None and not p.grad.any() for p in items.trainable())
    items.optimizer_step.fill_(2)
    items.with_fresh(cached, torch.tensor([[1, 2]])).sum().backward()
    assert calls[0] == 1 and any(p.grad.any() for p in items.trainable())


def test_cache_key_follows_the_frozen_weights_and_the_texts_not_the_trained_layers(tmp_path):
    tokens = catalog()
    encoder = tiny_bert()
    first = cached_lower_states(tmp_path / "states", tmp_path, encoder, 2, as_table(tokens), PAD)
    files = sorted((tmp_path / "states").iterdir())
    assert len(files) == 1
    key = frozen_fingerprint(encoder, 2, as_table(tokens))

    with torch.no_grad():  # the trained top layer moves: the lower states stay valid (same file)
        encoder.encoder.layer[2].output.dense.weight.add_(1.0)
    assert frozen_fingerprint(encoder, 2, as_table(tokens)) == key
    again = cached_lower_states(tmp_path / "states", tmp_path, encoder, 2, as_table(tokens), PAD)
    assert torch.equal(again.states, first.states) and sorted((tmp_path / "states").iterdir()) == files

    with torch.no_grad():  # a frozen layer changed (another encoder): another key, recomputed states
        encoder.encoder.layer[1].attention.self.query.weight.mul_(3.0)
    changed = cached_lower_states(tmp_path / "states", tmp_path, encoder, 2, as_table(tokens), PAD)
    assert frozen_fingerprint(encoder, 2, as_table(tokens)) != key
    assert not torch.allclose(changed.states.float(), first.states.float())
    assert len(list((tmp_path / "states").iterdir())) == 2

    other = catalog(seed=5)  # other texts (token ids): another key
    assert frozen_fingerprint(encoder, 2, as_table(other)) != frozen_fingerprint(encoder, 2, as_table(tokens))
    assert frozen_fingerprint(encoder, 1, as_table(tokens)) != frozen_fingerprint(encoder, 2, as_table(tokens))
    truncated = {k: [r[:4] for r in v] for k, v in tokens.items()}  # a shorter max_length: another key
    assert frozen_fingerprint(encoder, 2, as_table(truncated)) != frozen_fingerprint(encoder, 2, as_table(tokens))


@pytest.mark.slow
def test_two_processes_fine_tuning_the_top_layer_equal_one_process_on_the_concatenated_batch(tmp_path):

    from safetensors.torch import load_file

    from tests.conftest import REPO
    from tests.run_files import launch_two

    out = tmp_path / "result.safetensors"
    launch_two(REPO / "tests" / "models" / "fine_tuned_ddp_worker.py", out, 29941, tmp_path / "launch.log")
    r = load_file(str(out))
    for kind in ("all", "sample"):
        # a rank's own loss differs from the global batch's: the comparison is not trivially satisfied
        assert abs(r[f"{kind}_local_loss"].item() - r[f"{kind}_ref_loss"].item()) > 1e-4
        assert r[f"{kind}_encoder_grad"].abs().max() > 1e-6  # the top layer learns through the loss
        torch.testing.assert_close(r[f"{kind}_encoder_grad"], r[f"{kind}_ref_encoder_grad"], rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(r[f"{kind}_grad"], r[f"{kind}_ref_grad"], rtol=1e-4, atol=1e-7)
        # the refresh each rank did for its share, gathered, is the one-process catalog
        torch.testing.assert_close(r[f"{kind}_refresh"], r[f"{kind}_ref_refresh"], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(r["all_encoder_grad"], r["sample_encoder_grad"])  # the sample re-encodes fewer items


def test_top_layer_dropout_only_when_asked():
    encoder, tokens = tiny_bert(), catalog()
    encoder.config.hidden_dropout_prob = 0.5
    for module in encoder.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.5
    lower = compute_lower_states(encoder, 2, as_table(tokens), PAD)
    index = torch.tensor([1, 2, 3])
    quiet = TextEncoderItems(encoder, tokens, PAD, "mean", "top_layers", 1, lower).train()
    assert torch.equal(quiet.encode(index), quiet.encode(index)) and encoder.training  # no dropout, mode kept
    noisy = TextEncoderItems(encoder, tokens, PAD, "mean", "top_layers", 1, lower, dropout=True).train()
    assert not torch.equal(noisy.encode(index), noisy.encode(index))
