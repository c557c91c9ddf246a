from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO
from tests.run_files import launch_two
from translrec_dist.models.retrieval.bi_encoder import in_batch_loss


def test_in_batch_loss_masks_duplicates_of_the_positive():
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    items = torch.tensor([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]])
    item_index = torch.tensor([7, 3, 7])  # rows 0 and 2 share their positive
    loss = in_batch_loss(users, items, item_index, scale=2.0, gather=False)

    def ce(row: int, columns: list[int]) -> float:
        logits = {j: 2.0 * float(users[row] @ items[j]) for j in columns}
        return -logits[row] + math.log(sum(math.exp(v) for v in logits.values()))

    # row 0 does not see item row 2 (the same item) as a negative, nor row 2 item row 0
    expected = (ce(0, [0, 1]) + ce(1, [0, 1, 2]) + ce(2, [1, 2])) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.slow
def test_gather_negatives_two_processes_equal_one_process_on_the_concatenated_batch(tmp_path: Path):
    out = tmp_path / "result.safetensors"
    launch_two(REPO / "tests" / "models" / "gather_negatives_worker.py", out, 29911, tmp_path / "launch.log")
    r = load_file(str(out))
    assert r["loss"].item() == pytest.approx(r["ref_loss"].item(), rel=1e-5)
    # a rank's own loss differs (its rows only): the comparison is not trivially satisfied
    assert abs(r["local_loss"].item() - r["ref_loss"].item()) > 1e-4
    torch.testing.assert_close(r["grad"], r["ref_grad"], rtol=1e-4, atol=1e-6)



def test_item_id_embeddings_add_to_known_items_and_leave_new_items_to_their_text():
    from transformers import AutoModel, BertConfig

    from translrec_dist.models.retrieval.bi_encoder import BiEncoder

    torch.manual_seed(0)
    encoder = AutoModel.from_config(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
                                               num_attention_heads=2, intermediate_size=16))
    model = BiEncoder(encoder, similarity="dot", num_items=3).eval()
    with torch.no_grad():
        model.item_ids.weight.copy_(torch.arange(4 * 8, dtype=torch.float32).reshape(4, 8))
    ids, mask = torch.randint(5, 30, (3, 4)), torch.ones(3, 4, dtype=torch.long)
    text_only = model.encode_items(ids, mask)
    with_ids = model.encode_items(ids, mask, item_index=torch.tensor([0, 2, -1]))
    torch.testing.assert_close(with_ids[0] - text_only[0], model.item_ids.weight[1])
    torch.testing.assert_close(with_ids[1] - text_only[1], model.item_ids.weight[3])
    torch.testing.assert_close(with_ids[2], text_only[2])  # an item added after training: text alone


def test_retrieval_config_errors_name_the_key(tiny_cfg):
    from translrec_dist.errors import ConfigError

    with pytest.raises(ConfigError, match="train.gather_negatives"):
        tiny_cfg("task=ctr", "train.gather_negatives=true")
    with pytest.raises(ConfigError, match="model.temperature"):
        tiny_cfg("task=retrieval", "model.temperature=0")
    with pytest.raises(ConfigError, match="train.layer_lr_decay"):
        tiny_cfg("task=retrieval", "train.layer_lr_decay=1.5")
