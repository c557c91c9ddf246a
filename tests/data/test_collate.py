import numpy as np
import torch

from translrec_dist.data.collate import PadCollator
from translrec_dist.data.loader import epoch_permutation, eval_loader, train_loader


def rows(lengths):
    return [{"input_ids": list(range(1, n + 1)), "attention_mask": [1] * n, "token_type_ids": [0] * n,
             "label": i % 2, "example_id": i} for i, n in enumerate(lengths)]


def test_pads_to_longest_in_batch_not_max_length():
    batch = PadCollator(pad_token_id=0)(rows([3, 5, 2]))
    assert batch["input_ids"].shape == (3, 5)
    assert batch["attention_mask"].sum(1).tolist() == [3, 5, 2]
    assert batch["input_ids"][2].tolist() == [1, 2, 0, 0, 0]
    assert batch["labels"].dtype == torch.float32 and batch["example_id"].tolist() == [0, 1, 2]


def test_ranks_split_global_batches_and_resume_skips_exactly():
    ds = rows([4] * 50)
    collate = PadCollator(0)
    ids = {r: [b["example_id"].tolist() for b in train_loader(ds, collate, micro=4, accum=1, rank=r, world=2,
                                                              seed=3, epoch=0)] for r in (0, 1)}
    one = [b["example_id"].tolist() for b in train_loader(ds, collate, micro=8, accum=1, rank=0, world=1,
                                                          seed=3, epoch=0)]
    # The global batch of step t is the union of the ranks' batches, identical to one process with 2x micro.
    assert [a + b for a, b in zip(ids[0], ids[1], strict=True)] == one
    seen = sum(ids[0], []) + sum(ids[1], [])
    assert len(seen) == len(set(seen)) == 48  # disjoint; the tail that does not fill a step waits for next epoch
    resumed = [b["example_id"].tolist() for b in train_loader(ds, collate, micro=4, accum=1, rank=1, world=2,
                                                              seed=3, epoch=0, skip_batches=2)]
    assert resumed == ids[1][2:]
    assert not (epoch_permutation(50, 3, 0) == epoch_permutation(50, 3, 1)).all()


def test_eval_loader_gives_every_rank_the_same_number_of_batches():
    ds = rows([3] * 11)
    loaders = [eval_loader(ds, PadCollator(0), batch_size=4, rank=r, world=3) for r in range(3)]
    assert len({len(loader) for loader in loaders}) == 1
    ids = [i for loader in loaders for b in loader for i in b["example_id"].tolist()]
    assert sorted(i for i in ids if i >= 0) == list(range(11))  # each row once; padding flagged -1


def test_length_grouping_keeps_the_global_batches_and_cuts_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 60, size=400)
    ds = rows(lengths.tolist())
    collate = PadCollator(0)

    def load(micro, rank, world, grouped):
        return list(train_loader(ds, collate, micro=micro, accum=1, rank=rank, world=world, seed=1, epoch=0,
                                 lengths=lengths if grouped else None))

    two = [load(4, r, 2, True) for r in (0, 1)]
    one = load(8, 0, 1, True)
    assert [a["example_id"].tolist() + b["example_id"].tolist() for a, b in zip(*two, strict=True)] == \
        [b["example_id"].tolist() for b in one]
    plain = load(8, 0, 1, False)
    cells = [sum(b["input_ids"].numel() for b in batches) for batches in (one, plain)]
    assert cells[0] < 0.7 * cells[1]  # far less padding
    assert sorted(i for b in one for i in b["example_id"].tolist()) == \
        sorted(i for b in plain for i in b["example_id"].tolist())  # same examples this epoch


def test_arrow_batches_equal_row_batches():
    import datasets

    lengths = np.random.default_rng(1).integers(2, 30, size=64).tolist()
    table = rows(lengths)
    for r in table:
        del r["attention_mask"]  # stored unpadded without a mask, as tokenize_frame writes them
    ds = datasets.Dataset.from_list(table)
    collate = PadCollator(0)
    fast = list(train_loader(ds, collate, micro=8, accum=1, rank=1, world=2, seed=5, epoch=2, skip_batches=1))
    slow = list(train_loader(table, collate, micro=8, accum=1, rank=1, world=2, seed=5, epoch=2, skip_batches=1))
    assert len(fast) == len(slow) == 3
    for a, b in zip(fast, slow, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
