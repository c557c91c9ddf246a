"""One suite for every export that recommends (retrieval and sequential): a self-contained index (serving without
the raw dataset), ``index --backend faiss``, and ``translrec serve`` over real HTTP: /healthz, /recommend by user
and by history, /explain, concurrent requests, and the limits that keep one client from breaking the server."""

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

from tests.conftest import REPO
from tests.tiny_exports import SEQUENTIAL, write_export
from translrec_dist.config.schema import SyntheticConfig
from translrec_dist.data.synthetic import generate_synthetic
from translrec_dist.program import load_recommender
from translrec_dist.training.distributed import free_port

KINDS = {"retrieval": ["task=retrieval", "model.pooling=mean"], "sequential": SEQUENTIAL}


@pytest.fixture(scope="module", params=list(KINDS))
def moved_export(request, tmp_path_factory) -> Path:
    """A tiny export of each kind indexed from files (exact, and faiss without histories), then copied elsewhere
    with the dataset gone; what the in-process Recommender answered beside the data is kept to compare."""
    root = tmp_path_factory.mktemp(request.param)
    data = root / "data"
    data.mkdir()
    inter, items = generate_synthetic(SyntheticConfig(num_users=40, num_items=50, interactions_per_user=6))
    inter.to_csv(data / "interactions.csv", index=False)
    items.to_csv(data / "items.csv", index=False)
    final = write_export(root / "final", *KINDS[request.param], "data.format=interactions", f"data.path={data}")
    with_data = load_recommender(final, device="cpu", index=False)
    with_data.build_index()
    with_data.save_index()
    faiss = load_recommender(final, device="cpu", index=False)  # what `index --backend faiss --no-histories` does
    faiss.set_index_options("faiss", False)
    faiss.build_index()
    faiss.save_index(final / "index_faiss")
    history = [with_data.titles[4], "a brand new poetry volume"]
    expected = {"user": with_data.recommend(user="3", top_k=5, exclude_seen=True),
                "history": with_data.recommend(history=history, top_k=5), "history_given": history,
                "explain": with_data.explain("3", "7"), "seen": set(with_data.user_history("3"))}
    torch.save(expected, root / "expected.pt")
    shutil.copytree(final, root / "elsewhere" / "final")
    shutil.rmtree(data)  # the raw dataset is gone: serving must read the index only
    return root / "elsewhere" / "final"


def expected_of(moved_export: Path) -> dict:
    return torch.load(moved_export.parents[1] / "expected.pt", weights_only=False)


def test_recommender_needs_no_raw_dataset(moved_export: Path):
    expected = expected_of(moved_export)
    rec = load_recommender(moved_export, device="cpu")
    assert rec.recommend(user="3", top_k=5, exclude_seen=True) == expected["user"]
    assert rec.recommend(history=expected["history_given"], top_k=5) == expected["history"]
    assert rec.explain("3", "7") == expected["explain"]
    assert not expected["seen"] & {r["item_id"] for r in expected["user"]}
    with pytest.raises(Exception, match="unknown user"):
        rec.recommend(user="nobody")


def test_index_backend_faiss_without_histories(moved_export: Path):
    expected = expected_of(moved_export)
    rec = load_recommender(moved_export, device="cpu", index=False)
    rec.load_index(moved_export / "index_faiss")
    assert rec.search_index.backend == "faiss" and (moved_export / "index_faiss" / "faiss_hnsw.index").is_file()
    with pytest.raises(Exception, match="keeps no histories"):
        rec.recommend(user="3")
    got = rec.recommend(history=expected["history_given"], top_k=5)
    assert [g["item_id"] for g in got] == [w["item_id"] for w in expected["history"]]  # 50 items: HNSW is exact
    assert [g["score"] for g in got] == pytest.approx([w["score"] for w in expected["history"]], abs=1e-4)


def test_faiss_backend_finds_the_exact_neighbours_on_a_small_catalog(moved_export: Path, tmp_path: Path):
    from translrec_dist.serving.vector_index import ExactIndex, FaissIndex

    rec = load_recommender(moved_export, device="cpu")
    keys = rec.scorer.search_vectors(rec.embeddings)
    queries = torch.stack(rec.user_vectors([[("alpha beta", -1)], [("gamma", -1)], [(rec.titles[0], 0)]]))
    exact, approx = ExactIndex(keys), FaissIndex(keys)
    (es, er), (fs, fr) = exact.search(queries, 10), approx.search(queries, 10)
    assert (er == fr).mean() > 0.9  # HNSW on 50 items visits nearly everything
    torch.testing.assert_close(torch.as_tensor(fs), torch.as_tensor(es), atol=1e-4, rtol=0)
    approx.save(tmp_path)
    again = FaissIndex.load(tmp_path, keys)
    assert (again.search(queries, 10)[1] == fr).all()


@pytest.fixture(scope="module")
def app(moved_export: Path):
    """The HTTP app in this process (httpx's ASGI transport: real concurrency on one event loop, no server
    start-up); ``test_real_server`` runs it under uvicorn."""
    from translrec_dist.serving.http import Limits, build_app

    rec = load_recommender(moved_export, device="cpu")
    return build_app(rec, max_wait_ms=50, limits=Limits(max_body_bytes=200_000, max_item_chars=1000, max_history=50))


class Client:
    """Requests to ``app`` from one event loop per call; ``many`` sends several at once."""

    def __init__(self, app):
        self.app = app

    async def _send(self, calls):
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app", timeout=60) as client:
            return await asyncio.gather(*(getattr(client, method)(path, **kw) for method, path, kw in calls))

    def get(self, path):
        return asyncio.run(self._send([("get", path, {})]))[0]

    def post(self, path, **kw):
        return asyncio.run(self._send([("post", path, kw)]))[0]

    def many(self, bodies: list) -> list[httpx.Response]:
        """POST /recommend for each body at once (dicts as JSON, bytes as they are)."""
        return asyncio.run(self._send([
            ("post", "/recommend", {"content": b, "headers": {"content-type": "application/json"}})
            if isinstance(b, bytes) else ("post", "/recommend", {"json": b}) for b in bodies]))


@pytest.fixture(scope="module")
def server(app) -> Client:
    return Client(app)


@pytest.fixture(scope="module")
def real_server(moved_export: Path):
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "translrec_dist", "serve", "--model", str(moved_export),
                             "--host", "127.0.0.1", "--port", str(port), "--max-wait-ms", "50",
                             "--max-body-bytes", "200000"],
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


def test_http_recommend_by_user_and_history_explain_and_health(server: Client, moved_export: Path):
    expected = expected_of(moved_export)
    r = server.post("/recommend", json={"user": "3", "top_k": 5, "exclude_seen": True})
    assert r.status_code == 200 and r.json()["items"] == expected["user"]
    r = server.post("/recommend", json={"history": expected["history_given"], "top_k": 5})
    assert r.status_code == 200 and r.json()["items"] == expected["history"]
    r = server.post("/explain", json={"user": "3", "item": "7"})
    assert r.status_code == 200 and r.json() == expected["explain"]
    health = server.get("/healthz").json()
    assert health["status"] == "ok" and health["items"] == 50 and health["backend"] == "exact"
    assert health["task"] in KINDS
    assert not any("/" in str(v) for v in health.values())  # no filesystem path


def test_concurrent_requests_are_micro_batched(server: Client, moved_export: Path):
    rec = load_recommender(moved_export, device="cpu")
    histories = [[f"{w} movie"] for w in ("space", "love", "crime", "war", "robot", "ghost", "dragon", "ocean")]
    before = server.get("/healthz").json()
    responses = server.many([{"history": h, "top_k": 3} for h in histories])
    after = server.get("/healthz").json()
    for h, r in zip(histories, responses, strict=True):
        assert r.status_code == 200
        got, want = r.json()["items"], rec.recommend(history=h, top_k=3)
        assert [g["item_id"] for g in got] == [w["item_id"] for w in want]
        assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], abs=1e-5)
    assert after["requests"] - before["requests"] == len(histories)
    assert after["batches"] - before["batches"] < len(histories)  # some requests shared a pass
    assert after["largest_batch"] > 1


def test_a_poisoned_request_fails_alone(server: Client):
    """A lone surrogate is valid JSON but no text: that request gets a 4xx, the 30 sent with it get 200."""
    good = [{"history": [f"item {i} song"], "top_k": 2} for i in range(30)]
    responses = server.many([*good[:15], b'{"history": ["\\ud800 tail"], "top_k": 2}', *good[15:]])
    assert [r.status_code for r in responses[:15] + responses[16:]] == [200] * 30
    assert responses[15].status_code == 422 and "unicode" in responses[15].text


def test_a_failing_request_in_a_batch_gets_its_own_error(moved_export: Path):
    """Below HTTP: ``recommend_batch`` answers each request alone when one fails, in the scorer or before it."""
    rec = load_recommender(moved_export, device="cpu")
    user_vectors = rec.scorer.user_vectors

    def fails_on_poison(histories, items):
        if any(text == "poison" for h in histories for text, _ in h):
            raise RuntimeError("tokenizer exploded")
        return user_vectors(histories, items)

    rec.scorer.user_vectors = fails_on_poison
    requests = [{"history": ["a song"], "top_k": 2}, {"history": ["poison"], "top_k": 2},
                {"history": ["\ud800"], "top_k": 2}, {"user": "3", "top_k": 2}]
    out = rec.recommend_batch(requests)
    assert isinstance(out[1], RuntimeError) and "Unicode" in str(out[2])
    assert out[0] == rec.recommend(history=["a song"], top_k=2) and len(out[3]) == 2


def test_limits_answer_fast_and_leave_others_unaffected(server: Client):
    started = time.monotonic()
    big, small = server.many([b'{"history": ["' + b"x" * 300_000 + b'"]}', {"history": ["a song"], "top_k": 2}])
    assert time.monotonic() - started < 1.0
    assert big.status_code == 413 and "200000 bytes" in big.text and small.status_code == 200
    for body, limit in [({"history": ["y" * 1001]}, "1000 characters"), ({"history": ["z"] * 51}, "50 items"),
                        ({"user": "u" * 1001}, "1000 characters")]:
        started = time.monotonic()
        r = server.post("/recommend", json=body)
        assert time.monotonic() - started < 1.0
        assert r.status_code == 422 and limit in r.text and len(r.text) < 400, r.text  # no echo of the input


@pytest.mark.parametrize("body, status, message", [
    ({"top_k": 3}, 422, "exactly one of"),
    ({"user": "3", "history": ["x"]}, 422, "exactly one of"),
    ({"user": "3", "top_k": 0}, 422, "greater than or equal to 1"),
    ({"user": "3", "color": "red"}, 422, "color"),
    ({"user": "nobody"}, 404, "unknown user"),
    ({"history": ["  "]}, 400, "no history"),
])
def test_bad_requests_get_a_4xx_with_a_message(server: Client, body, status, message):
    r = server.post("/recommend", json=body)
    assert r.status_code == status and message in r.text


def test_errors_are_short_and_echo_little(server: Client):
    r = server.post("/recommend", json={"user": "q" * 900})
    assert r.status_code == 404 and "q" * 30 not in r.text and "data" not in r.text
    r = server.post("/explain", json={"user": "3", "item": "no-such-item"})
    assert r.status_code == 404 and "unknown item" in r.text
    r = server.post("/recommend", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.text


@pytest.mark.slow
def test_real_server(real_server: str, moved_export: Path):
    """The same app under uvicorn (``translrec serve``): health, a recommendation, and a body over the limit."""
    expected = expected_of(moved_export)
    assert httpx.get(real_server + "/healthz").json()["items"] == 50
    r = httpx.post(real_server + "/recommend", json={"user": "3", "top_k": 5, "exclude_seen": True})
    assert r.status_code == 200 and r.json()["items"] == expected["user"]
    r = httpx.post(real_server + "/recommend", content=b'{"history": ["' + b"x" * 300_000 + b'"]}',
                   headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_prometheus_metrics_count_requests_latencies_and_batches(server: Client):
    before = server.get("/metrics").text
    server.many([{"history": [f"song {i}"], "top_k": 2} for i in range(4)])
    server.post("/recommend", json={"user": "nobody"})
    text = server.get("/metrics").text

    def value(line_start: str, page: str) -> float:
        found = [float(x.split()[-1]) for x in page.splitlines() if x.startswith(line_start)]
        return found[0] if found else 0.0

    ok, missing = 'translrec_requests_total{path="/recommend",status="200"}', \
        'translrec_requests_total{path="/recommend",status="404"}'
    assert value(ok, text) - value(ok, before) == 4 and value(missing, text) - value(missing, before) == 1
    count = 'translrec_request_seconds_count{path="/recommend"}'
    assert value(count, text) - value(count, before) == 5
    assert value("translrec_batch_size_count", text) - value("translrec_batch_size_count", before) >= 2
    assert "# TYPE translrec_batch_size histogram" in text and 'le="+Inf"' in text


def test_the_openapi_page_describes_typed_responses(server: Client):
    schemas = server.get("/openapi.json").json()["components"]["schemas"]
    assert {"RecommendResponse", "Item", "ExplainResponse", "Health"} <= set(schemas)
    assert set(schemas["Item"]["properties"]) == {"item_id", "title", "score"}
