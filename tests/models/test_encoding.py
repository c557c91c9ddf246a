"""Length-sorted, sharded catalog encoding gives every row its own vector, in row order, on any world size."""

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel

from translrec_dist.models.encoders import pool
from translrec_dist.models.encoding import encode_tokenized, length_sorted_order, put_in_order, rank_share


def tiny_bert():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    return BertModel(config).eval()


def rows(n=37, seed=0):
    rng = np.random.default_rng(seed)
    return {"input_ids": [rng.integers(1, 50, size=int(rng.integers(2, 30))).tolist() for _ in range(n)]}


def forward_for(model):
    def forward(batch):
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return pool(hidden, batch["attention_mask"], "mean") + batch["item_index"][:, None]
    return forward


def test_length_sorted_order_sorts_each_window_and_is_a_permutation():
    lengths = np.array([5, 1, 4, 2, 9, 3, 3, 0])
    order = length_sorted_order(lengths, window=3)
    assert sorted(order.tolist()) == list(range(8))
    assert order.tolist() == [1, 2, 0, 3, 5, 4, 7, 6]  # windows [0:3], [3:6], [6:8], each sorted, stable
    assert rank_share(np.arange(5), 1, 2).tolist() == [1, 3, -1]  # same count on every rank, -1 pads


def test_sorted_batches_match_one_row_at_a_time_and_keep_row_order():
    model, data = tiny_bert(), rows()
    forward = forward_for(model)
    index = np.arange(len(data["input_ids"]), dtype=np.float32) * 10  # a per-row extra: must reach its own row
    positions, vectors = encode_tokenized(forward, data, pad_token_id=0, batch_size=8, window=16,
                                          extra={"item_index": index})
    out = put_in_order(positions, vectors, len(data["input_ids"]))
    with torch.no_grad():
        expected = torch.cat([forward({"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids)),
                                       "item_index": torch.tensor([index[i]])})
                              for i, ids in enumerate(data["input_ids"])])
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    assert not out.is_inference()  # callers may update it in place (index building, scatter of targets)

    # Two ranks: equal counts, every row exactly once, the same matrix once gathered.
    shares = [encode_tokenized(forward, data, pad_token_id=0, batch_size=8, window=16, rank=r, world=2,
                               extra={"item_index": index}) for r in (0, 1)]
    assert len(shares[0][0]) == len(shares[1][0])
    pos = torch.cat([p for p, _ in shares])
    assert sorted(pos[pos >= 0].tolist()) == list(range(len(data["input_ids"])))
    both = put_in_order(pos, torch.cat([v for _, v in shares]), len(data["input_ids"]))
    torch.testing.assert_close(both, expected, rtol=1e-4, atol=1e-5)


def test_bf16_encoding_returns_fp32_vectors_close_to_fp32():
    model, data = tiny_bert(), rows(seed=1)
    forward = forward_for(model)
    extra = {"item_index": np.zeros(len(data["input_ids"]), dtype=np.float32)}
    fp32 = put_in_order(*encode_tokenized(forward, data, 0, batch_size=8, extra=extra), len(data["input_ids"]))
    bf16 = put_in_order(*encode_tokenized(forward, data, 0, batch_size=8, precision="bf16", extra=extra),
                        len(data["input_ids"]))
    assert bf16.dtype == torch.float32
    assert not torch.equal(bf16, fp32)  # autocast really ran in bf16
    cos = torch.nn.functional.cosine_similarity(bf16, fp32)
    assert cos.min() > 0.99


def catalog_texts(n=45, seed=3):
    rng = np.random.default_rng(seed)
    words = ["drama", "comedy", "space", "war", "love", "noir", "the", "of", "a", "night", "city", "robot"]
    return [" ".join(rng.choice(words, size=int(rng.integers(1, 25)))) for _ in range(n)]


def plain_batches(encoder, tokenizer, texts, pooling, batch_size):
    """What the replaced per-batch encoders did: file order, each batch padded to its longest row."""
    with torch.no_grad():
        out = []
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=40,
                              return_tensors="pt")
            out.append(pool(encoder(**batch).last_hidden_state, batch["attention_mask"], pooling))
        return torch.cat(out)


def test_one_encoder_for_texts_and_the_trainable_item_tower_equals_a_plain_per_batch_forward():
    import pandas as pd

    from translrec_dist.data.retrieval import tokenize_catalog
    from translrec_dist.data.tokenize import train_wordpiece
    from translrec_dist.models.encoding import encode_texts, eval_mode, pooled_forward
    from translrec_dist.models.sequential.trainable_items import TextEncoderItems

    texts = catalog_texts()
    tokenizer = train_wordpiece(iter(texts), 60, 40)
    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2,
                                   num_attention_heads=2, intermediate_size=32, max_position_embeddings=64))
    encoder.train()  # as a freshly built encoder is: dropout on, which eval_mode must switch off
    for pooling in ("cls", "mean"):
        expected = plain_batches(encoder.eval(), tokenizer, texts, pooling, batch_size=8)
        encoder.train()
        with eval_mode(encoder):
            out = encode_texts(pooled_forward(encoder, pooling), texts, tokenizer, 40, batch_size=8)
        assert encoder.training  # restored
        # Sorting really reordered the batches (lengths 1..24 words in file order), and the rows came back in order.
        lengths = [len(tokenizer(t)["input_ids"]) for t in texts]
        assert lengths != sorted(lengths)
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)

        # The sequential item tower's refresh (whole catalog, no gradients) and its with-gradient batch path.
        items = TextEncoderItems(encoder, tokenize_catalog(pd.Series(texts), tokenizer, 40), tokenizer.pad_token_id,
                                 pooling, "full", 0)
        torch.testing.assert_close(items.encode_all(batch_size=8), expected, rtol=1e-4, atol=1e-5)
        assert encoder.training
        index = torch.tensor([7, 0, 30])
        with eval_mode(encoder):
            fresh = items.encode(index)
        assert fresh.requires_grad
        torch.testing.assert_close(fresh, expected[index], rtol=1e-4, atol=1e-5)


def test_prefetched_keeps_order_raises_the_producers_error_and_stops_its_thread_when_closed():
    import threading

    import pytest

    from translrec_dist.models.encoding import prefetched

    assert list(prefetched(iter(range(50)), depth=2)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("row 7: no input_ids")

    with pytest.raises(ValueError, match="row 7"):
        list(prefetched(failing()))

    before = threading.active_count()
    consumer = prefetched(iter(range(10_000)), depth=2)
    assert next(consumer) == 0
    consumer.close()  # the consumer stops early (an error in the forward): the producer must not stay blocked
    assert threading.active_count() == before


@pytest.mark.slow
def test_two_ranks_split_the_frozen_catalog_encoding_and_gather_what_one_process_encodes(tmp_path):

    from safetensors.torch import load_file

    from tests.conftest import REPO
    from tests.run_files import launch_two

    out = tmp_path / "result.safetensors"
    launch_two(REPO / "tests" / "models" / "split_encoding_worker.py", out, 29937, tmp_path / "launch.log")
    r, other = load_file(str(out)), load_file(str(out.with_suffix(".rank1")))
    assert r["alone"].shape[0] == 83 and r["alone"].abs().sum() > 0
    torch.testing.assert_close(r["split"], r["alone"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(other["split"], r["alone"], rtol=1e-4, atol=1e-5)  # every rank has the whole matrix
    torch.testing.assert_close(r["cached"], r["alone"], rtol=1e-4, atol=1e-5)
    assert int(r["cache_files"]) == 1
    # Each rank encoded its own share (and the cached read encoded nothing): 42 + 41 rows, not 83 on each.
    assert sorted([int(r["rows_encoded"]), int(other["rows_encoded"])]) == [41, 42]
