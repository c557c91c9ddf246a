from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from translrec_dist.config.schema import SequenceConfig
from translrec_dist.models.sequential.model import SequenceModel

P = -1


def tiny(item_repr="text+id", **kw) -> SequenceModel:
    torch.manual_seed(0)
    cfg = SequenceConfig(item_repr=item_repr, hidden=16, heads=2, inner=32, layers=2, dropout=0.0, attn_dropout=0.0,
                         adaptor_dropout=0.0).model_copy(update=kw)
    model = SequenceModel(cfg, num_items=7, max_history=5, text_dim=6 if item_repr != "id" else 0)
    if item_repr != "id":
        model.items.set_text_vectors(torch.randn(7, 6))
    model.set_popularity(torch.tensor([5.0, 1, 1, 2, 3, 0, 4]))
    return model.eval()


WINDOWS = torch.tensor([[0, 1, 2, 3, 4, 6], [P, P, P, 3, 1, 0], [P, P, P, P, 2, 6]])


def test_full_softmax_loss_equals_a_hand_computation_over_every_real_position():
    model = tiny()
    model.set_popularity(torch.ones(7))  # every item trained: the softmax spans the catalog
    vectors = model.catalog()
    states = model.states(WINDOWS[:, :-1], vectors)
    terms = []
    for b in range(3):
        for t in range(5):
            inp, tgt = int(WINDOWS[b, t]), int(WINDOWS[b, t + 1])
            if inp >= 0 and tgt >= 0:
                logits = states[b, t] @ vectors.T
                terms.append(torch.logsumexp(logits, 0) - logits[tgt])
    assert len(terms) == 5 + 2 + 1
    assert float(model(WINDOWS)) == pytest.approx(float(torch.stack(terms).mean()), rel=1e-5)


def test_states_are_causal_and_ignore_left_padding():
    model = tiny()
    vectors = model.catalog()
    a = model.states(torch.tensor([[0, 1, 2, 3, 4]]), vectors)
    b = model.states(torch.tensor([[0, 1, 2, 5, 6]]), vectors)  # the future differs
    assert torch.allclose(a[0, :3], b[0, :3], atol=1e-6) and not torch.allclose(a[0, 3:], b[0, 3:])
    short = model.user_vectors(torch.tensor([[2, 3]]))
    padded = model.user_vectors(torch.tensor([[P, P, P, 2, 3]]))
    assert torch.allclose(short, padded, atol=1e-6)


def test_sampled_softmax_applies_logq_and_masks_accidental_hits():
    model = tiny(loss="sampled", logq=True)
    negatives = torch.tensor([6, 3, 0])
    vectors = model.catalog()
    inputs, targets = WINDOWS[:, :-1], WINDOWS[:, 1:]
    keep = (inputs >= 0) & (targets >= 0)
    states, tgt = model.states(inputs, vectors)[keep], targets[keep]
    cand = torch.cat([tgt, negatives])
    log_q = torch.log(torch.tensor([5.0, 1, 1, 2, 3, 0, 4]) / 16).clamp(min=-27.6)
    expected = []
    for r in range(len(tgt)):
        logits = states[r] @ vectors[cand].T - log_q[cand]
        hit = (cand == tgt[r]) & (torch.arange(len(cand)) != r)  # the same item elsewhere is no negative
        logits = logits.masked_fill(hit, float("-inf"))
        expected.append(torch.logsumexp(logits, 0) - logits[r])
    got = model(WINDOWS, negatives)
    assert float(got) == pytest.approx(float(torch.stack(expected).mean()), rel=1e-5)
    without = tiny(loss="sampled", logq=False)(WINDOWS, negatives)
    assert abs(float(without) - float(got)) > 1e-3  # the correction changes the loss


def test_id_only_model_has_no_text_and_new_items_use_text_alone():
    ids = tiny("id")
    assert not ids.items.use_text and ids.catalog().shape == (7, 16)
    text = tiny("text+id")
    new = torch.randn(2, 6)
    alone = text.items.adaptor(new)
    assert torch.allclose(text.items(text=new, index=torch.tensor([-1, 99])), alone)


@pytest.mark.parametrize("adaptor", ["linear", "mlp", "whitening", "moe"])
def test_adaptors_train(adaptor):
    model = tiny("text", adaptor=adaptor).train()
    model(WINDOWS).backward()
    assert all(p.grad is not None for p in model.items.adaptor.parameters())


@pytest.mark.slow
def test_two_processes_with_gathered_negatives_equal_one_process_on_the_concatenated_batch(tmp_path):

    from safetensors.torch import load_file

    from tests.conftest import REPO
    from tests.run_files import launch_two

    out = tmp_path / "result.safetensors"
    launch_two(REPO / "tests" / "models" / "sequential_gather_worker.py", out, 29931, tmp_path / "launch.log")
    r = load_file(str(out))
    for kind in ("sampled", "full"):
        assert r[f"{kind}_loss"].item() == pytest.approx(r[f"{kind}_ref_loss"].item(), rel=1e-5)
        # a rank's own loss differs (its rows only): the comparison is not trivially satisfied
        assert abs(r[f"{kind}_local_loss"].item() - r[f"{kind}_ref_loss"].item()) > 1e-4
        torch.testing.assert_close(r[f"{kind}_grad"], r[f"{kind}_ref_grad"], rtol=1e-4, atol=1e-6)


def test_top_layers_regime_trains_the_top_encoder_layer_and_refreshes_cached_vectors(tiny_cfg):
    from translrec_dist.data.sequences import build_sequence_data, training_windows
    from translrec_dist.data.stages import read_source
    from translrec_dist.tasks.sequential import build_sequential, item_text_vectors

    cfg = tiny_cfg("task=sequential", "model.sequence.encoder=top_layers", "model.sequence.train_layers=1",
                   "model.sequence.hidden=16", "model.sequence.inner=32", "data.max_history=6")
    data = build_sequence_data(*read_source(cfg), cfg)
    model = build_sequential(cfg, data, item_text_vectors(cfg, data, cfg.output_dir)).train()
    windows = torch.as_tensor(training_windows(data.train, 6)[:4])
    model(windows).backward()
    layers = model.text_items.encoder.encoder.layer
    assert all(p.grad is not None for p in layers[-1].parameters())  # the top layer learns
    assert all(p.grad is None for p in layers[0].parameters())  # the lower layer stays frozen
    before = model.items.text.clone()
    with torch.no_grad():
        for p in layers[-1].parameters():
            p.add_(0.05)
    model.refresh_catalog()
    assert not torch.allclose(before, model.items.text)


def test_full_softmax_leaves_out_items_without_training_interactions():
    model = tiny()  # popularity of item 5 is 0: held out (cold) or new
    windows = torch.tensor([[0, 1, 2, 3, 4, 6]])
    vectors = model.catalog()
    states = model.states(windows[:, :-1], vectors)[0]
    keep = torch.tensor([True] * 5 + [False, True])
    logits = states @ vectors[keep].T
    targets = torch.tensor([1, 2, 3, 4, 5])  # positions among the kept items (item 6 -> 5)
    expected = F.cross_entropy(logits, targets)
    assert float(model(windows)) == pytest.approx(float(expected), rel=1e-5)


def masked_full_softmax_loss(model, windows):
    """The reference: logits over the whole catalog (``score``), untrained items masked out."""
    vectors = model.catalog()
    inputs, targets = windows[:, :-1], windows[:, 1:]
    keep = (inputs >= 0) & (targets >= 0)
    logits = model.score(model.states(inputs, vectors)[keep], vectors).masked_fill(~model.trained, torch.finfo().min)
    return float(F.cross_entropy(logits, targets[keep]))


def test_restricted_logits_loss_with_cosine_scores_equals_the_masked_softmax_of_score():
    model = tiny(normalize=True, temperature=0.2)
    assert float(model(WINDOWS)) == pytest.approx(masked_full_softmax_loss(model, WINDOWS), rel=1e-5)


def test_restricted_logits_loss_equals_the_masked_full_catalog_softmax_and_follows_a_loaded_state():
    model = tiny()  # item 5 untrained: the logits span the 6 trained items only
    assert float(model(WINDOWS)) == pytest.approx(masked_full_softmax_loss(model, WINDOWS), rel=1e-5)
    # the cached index follows the buffer: a state dict with another untrained item (copied in place) ...
    windows = torch.tensor([[0, 1, 3, 4, 6, 0]])  # item 2 is no target
    state = model.state_dict()
    state["trained"] = torch.tensor([True, True, False, True, True, True, True])
    model.load_state_dict(state)
    only_2_out = float(model(windows))
    assert only_2_out == pytest.approx(masked_full_softmax_loss(model, windows), rel=1e-5)
    model.set_popularity(torch.ones(7))  # ... and a new popularity where every item trained
    assert float(model(windows)) == pytest.approx(masked_full_softmax_loss(model, windows), rel=1e-5)
    assert abs(float(model(windows)) - only_2_out) > 1e-4  # the trained set changes the loss


def test_items_without_training_interactions_use_text_alone_and_id_dropout_drops_ids():
    model = tiny("text+id")  # item 5 has no training interaction
    with torch.no_grad():
        model.items.ids.weight[1:].normal_()
    vectors = model.catalog()
    text_only = model.items.adaptor(model.items.text)
    assert torch.allclose(vectors[5], text_only[5]) and not torch.allclose(vectors[0], text_only[0])
    model.cfg = model.cfg.model_copy(update={"id_dropout": 0.5})
    model.train()
    torch.manual_seed(1)
    with_ids = (model.catalog() - model.items.adaptor(model.items.text)).abs().sum(1) > 1e-6
    assert 0 < int(with_ids.sum()) < 6 and not bool(with_ids[5])  # some IDs dropped, never the untrained one


def test_learned_unknown_id_trains_on_dropped_ids_and_scores_items_without_one():
    zero, learned = tiny(id_dropout=0.5), tiny(id_dropout=0.5, unknown_id="learned")
    for model in (zero, learned):
        model.train()
        torch.manual_seed(2)
        model(WINDOWS).backward()
    assert zero.items.ids.weight.grad[0].abs().sum() == 0  # zero: row 0 stays "text alone"
    assert learned.items.ids.weight.grad[0].abs().sum() > 0  # learned: the unknown-item vector trains
    with torch.no_grad():
        learned.items.ids.weight[0].fill_(0.5)
    learned.eval()
    text_only = learned.items.adaptor(learned.items.text)
    vectors = learned.catalog()  # item 5 has no training interaction: its text plus the unknown-item vector
    torch.testing.assert_close(vectors[5], text_only[5] + 0.5)
    assert not torch.allclose(vectors[0], text_only[0] + 0.5)  # a trained item keeps its own ID vector
