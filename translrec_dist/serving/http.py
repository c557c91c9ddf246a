"""``translrec serve``: a retrieval export over HTTP (FastAPI + uvicorn; ``pip install 'translrec-dist[serve]'``).

``POST /recommend`` {"user": ID} or {"history": [texts, newest first]}, optional "top_k", "exclude_seen"
``POST /explain`` {"user": ID, "item": ID}
``GET /healthz`` model, items, and the micro-batching counters

Concurrent /recommend requests that arrive within ``max_wait_ms`` of each other are answered by one user-tower
forward pass and one index search (``Recommender.recommend_batch``), which is where a CPU or GPU spends its time.
"""


import asyncio
import logging
from pathlib import Path

from translrec_dist.errors import ConfigError, DataError

log = logging.getLogger(__name__)


class MicroBatcher:
    """Collects calls for up to ``max_wait_ms`` (or ``max_batch`` calls) and runs ``fn(list)`` once, off the
    event loop; each caller gets its own element of the result (an exception element is raised to it)."""

    def __init__(self, fn, max_batch: int = 64, max_wait_ms: float = 5.0):
        self.fn, self.max_batch, self.max_wait = fn, max_batch, max_wait_ms / 1000
        self.queue: asyncio.Queue | None = None
        self.worker: asyncio.Task | None = None
        self.batches = self.requests = self.largest = 0

    async def submit(self, item):
        if self.worker is None:  # created lazily: the queue belongs to the server's event loop
            self.queue = asyncio.Queue()
            self.worker = asyncio.create_task(self.run())
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((item, future))
        result = await future
        if isinstance(result, Exception):
            raise result
        return result

    async def run(self):
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            self.batches, self.requests = self.batches + 1, self.requests + len(batch)
            self.largest = max(self.largest, len(batch))
            try:
                results = await asyncio.to_thread(self.fn, [item for item, _ in batch])
            except Exception as e:  # noqa: BLE001 - every waiting caller must hear about it
                log.exception("batch failed")
                results = [e] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)


def build_app(rec, max_batch: int = 64, max_wait_ms: float = 5.0):
    from fastapi import FastAPI, HTTPException
    from pydantic import BaseModel, ConfigDict, Field, model_validator

    class RecommendRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        user: str | None = None
        history: list[str] | None = Field(None, min_length=1)
        top_k: int = Field(10, ge=1, le=1000)
        exclude_seen: bool = False

        @model_validator(mode="after")
        def one_of(self):
            if (self.user is None) == (self.history is None):
                raise ValueError("give exactly one of 'user' (a user id) or 'history' (item texts, newest first)")
            return self

    class ExplainRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        user: str
        item: str

    rec.ensure_index()
    batcher = MicroBatcher(rec.recommend_batch, max_batch, max_wait_ms)
    app = FastAPI(title="translrec", description=f"retrieval model {rec.model_dir}")

    def client_error(e: DataError) -> HTTPException:
        return HTTPException(status_code=404 if str(e).startswith("unknown") else 400, detail=str(e))

    @app.post("/recommend")
    async def recommend(request: RecommendRequest) -> dict:
        try:
            items = await batcher.submit(request.model_dump())
        except DataError as e:
            raise client_error(e) from None
        return {"items": items}

    @app.post("/explain")
    async def explain(request: ExplainRequest) -> dict:
        try:
            return await asyncio.to_thread(rec.explain, request.user, request.item)
        except DataError as e:
            raise client_error(e) from None

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "model": str(rec.model_dir), "items": len(rec.item_ids),
                "backend": rec.search_index.backend, "batches": batcher.batches, "requests": batcher.requests,
                "largest_batch": batcher.largest}

    return app


def serve(model_dir: str, index_dir: str | None, host: str, port: int, max_batch: int = 64,
          max_wait_ms: float = 5.0) -> None:
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("translrec serve needs FastAPI and uvicorn: pip install 'translrec-dist[serve]'") from None
    from translrec_dist.serving import Recommender

    rec = Recommender.from_pretrained(model_dir, index=False)
    rec.load_index(Path(index_dir) if index_dir else None)
    app = build_app(rec, max_batch, max_wait_ms)
    log.info("serving %s (%d items) on http://%s:%d", model_dir, len(rec.item_ids), host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning")
