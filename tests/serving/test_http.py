"""A self-contained index (serving without the raw dataset) and ``translrec serve`` over real HTTP."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch

from tests.conftest import FAST, REPO, TINY, run_cli
from translrec_dist.config import SyntheticConfig, load_config
from translrec_dist.data.synthetic import generate_synthetic
from translrec_dist.data.tokenize import train_wordpiece
from translrec_dist.models.bi_encoder import build_bi_encoder
from translrec_dist.models.export import write_export
from translrec_dist.serving import Recommender
from translrec_dist.training.distributed import free_port


@pytest.fixture(scope="module")
def moved_export(tmp_path_factory) -> Path:
    """A tiny retrieval export indexed from files, then copied elsewhere with the dataset gone."""
    root = tmp_path_factory.mktemp("http")
    data = root / "data"
    data.mkdir()
    inter, items = generate_synthetic(SyntheticConfig(num_users=40, num_items=50, interactions_per_user=6))
    inter.to_csv(data / "interactions.csv", index=False)
    items.to_csv(data / "items.csv", index=False)
    cfg = load_config(TINY, [*FAST, "task=retrieval", "model.pooling=mean", "data.format=interactions",
                             f"data.path={data}", f"output_dir={root / 'run'}"])
    texts = items["title"].astype(str).tolist() + items["description"].astype(str).tolist()
    tokenizer = train_wordpiece(texts, 300, cfg.data.max_length)
    model = build_bi_encoder(cfg, tokenizer).eval()
    write_export(root / "final", model.state_dict(), model, tokenizer, cfg)
    run_cli(["index", "--model", str(root / "final")])
    run_cli(["index", "--model", str(root / "final"), "--backend", "faiss", "--no-histories", "--out",
             str(root / "final" / "index_faiss")])
    with_data = Recommender.from_pretrained(root / "final", device="cpu")
    expected = {"3": with_data.recommend(user="3", top_k=5, exclude_seen=True),
                "explain": with_data.explain("3", "7")}
    torch.save(expected, root / "expected.pt")
    shutil.copytree(root / "final", root / "elsewhere" / "final")
    shutil.rmtree(data)  # the raw dataset is gone: serving must read the index only
    return root / "elsewhere" / "final"


def test_recommender_needs_no_raw_dataset(moved_export: Path):
    expected = torch.load(moved_export.parents[1] / "expected.pt", weights_only=False)
    rec = Recommender.from_pretrained(moved_export, device="cpu")
    assert rec.recommend(user="3", top_k=5, exclude_seen=True) == expected["3"]
    assert rec.explain("3", "7") == expected["explain"]
    assert not set(rec.user_history("3")) & {r["item_id"] for r in expected["3"]}
    with pytest.raises(Exception, match="unknown user"):
        rec.recommend(user="nobody")


def test_index_options_faiss_without_histories(moved_export: Path):
    expected = torch.load(moved_export.parents[1] / "expected.pt", weights_only=False)
    rec = Recommender.from_pretrained(moved_export, device="cpu", index=False)
    rec.load_index(moved_export / "index_faiss")
    assert rec.search_index.backend == "faiss" and (moved_export / "index_faiss" / "faiss_hnsw.index").is_file()
    with pytest.raises(Exception, match="keeps no histories"):
        rec.recommend(user="3")
    exact = Recommender.from_pretrained(moved_export, device="cpu")
    history = [r["title"] for r in expected["3"][:2]]
    got, want = rec.recommend(history=history, top_k=5), exact.recommend(history=history, top_k=5)
    assert [g["item_id"] for g in got] == [w["item_id"] for w in want]  # 50 items: HNSW is exact here


def test_faiss_backend_finds_the_exact_neighbours_on_a_small_catalog(moved_export: Path, tmp_path: Path):
    from translrec_dist.serving.vector_index import ExactIndex, FaissIndex

    rec = Recommender.from_pretrained(moved_export, device="cpu")
    queries = rec.encode(["alpha beta", "gamma", "delta epsilon zeta"], "users")
    exact, approx = ExactIndex(rec.embeddings), FaissIndex(rec.embeddings)
    (es, er), (fs, fr) = exact.search(queries, 10), approx.search(queries, 10)
    assert (er == fr).mean() > 0.9  # HNSW on 50 items visits nearly everything
    torch.testing.assert_close(torch.as_tensor(fs), torch.as_tensor(es), atol=1e-4, rtol=0)
    approx.save(tmp_path)
    again = FaissIndex.load(tmp_path, rec.embeddings)
    assert (again.search(queries, 10)[1] == fr).all()


@pytest.fixture(scope="module")
def server(moved_export: Path):
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "translrec_dist", "serve", "--model", str(moved_export),
                             "--host", "127.0.0.1", "--port", str(port), "--max-wait-ms", "50"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"server did not start:\n{proc.stdout.read()[-4000:]}")
        time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_http_recommend_explain_and_health(server: str, moved_export: Path):
    expected = torch.load(moved_export.parents[1] / "expected.pt", weights_only=False)
    r = httpx.post(server + "/recommend", json={"user": "3", "top_k": 5, "exclude_seen": True})
    assert r.status_code == 200 and r.json()["items"] == expected["3"]
    r = httpx.post(server + "/explain", json={"user": "3", "item": "7"})
    assert r.status_code == 200 and r.json() == expected["explain"]
    health = httpx.get(server + "/healthz").json()
    assert health["status"] == "ok" and health["items"] == 50 and health["backend"] == "exact"


def test_concurrent_requests_are_micro_batched(server: str, moved_export: Path):
    rec = Recommender.from_pretrained(moved_export, device="cpu")
    histories = [[f"{w} movie"] for w in ("space", "love", "crime", "war", "robot", "ghost", "dragon", "ocean")]
    before = httpx.get(server + "/healthz").json()

    async def fire():
        async with httpx.AsyncClient(base_url=server, timeout=60) as client:
            return await asyncio.gather(*(client.post("/recommend", json={"history": h, "top_k": 3})
                                          for h in histories))

    responses = asyncio.run(fire())
    after = httpx.get(server + "/healthz").json()
    for h, r in zip(histories, responses, strict=True):
        assert r.status_code == 200
        got, want = r.json()["items"], rec.recommend(history=h, top_k=3)
        assert [g["item_id"] for g in got] == [w["item_id"] for w in want]
        assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], abs=1e-5)
    assert after["requests"] - before["requests"] == len(histories)
    assert after["batches"] - before["batches"] < len(histories)  # some requests shared a forward pass
    assert after["largest_batch"] > 1


@pytest.mark.parametrize("body, status, message", [
    ({"top_k": 3}, 422, "exactly one of"),
    ({"user": "3", "history": ["x"]}, 422, "exactly one of"),
    ({"user": "3", "top_k": 0}, 422, "greater than or equal to 1"),
    ({"user": "3", "color": "red"}, 422, "color"),
    ({"user": "nobody"}, 404, "unknown user"),
    ({"history": ["  "]}, 400, "no history"),
])
def test_bad_requests_get_a_4xx_with_a_message(server: str, body, status, message):
    r = httpx.post(server + "/recommend", json=body)
    assert r.status_code == status and message in r.text


def test_bad_explain_and_bad_json(server: str):
    r = httpx.post(server + "/explain", json={"user": "3", "item": "no-such-item"})
    assert r.status_code == 404 and "unknown item" in r.text
    r = httpx.post(server + "/recommend", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.text
