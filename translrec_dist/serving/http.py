"""``translrec serve``: any export that recommends, over HTTP (FastAPI + uvicorn: the ``serve`` extra).

``POST /recommend`` {"user": ID} or {"history": [texts, newest first]}, optional "top_k", "exclude_seen"
``POST /explain`` {"user": ID, "item": ID}
``GET /healthz`` task, items, backend and the micro-batching counters (no filesystem paths)
``GET /metrics`` Prometheus text format: requests by endpoint and status, latency and micro-batch size histograms

Concurrent /recommend requests that arrive within ``max_wait_ms`` of each other are answered by one user-vector
pass and one index search (``Recommender.recommend_batch``), which is where a CPU or GPU spends its time.

One client cannot break the server: the body, each history item (characters, checked before any tokenizer
sees it) and the history's length are capped (413 / 422 naming the limit, answered before the request joins
a micro-batch, so a large request never holds the queue); each request's error is its own (4xx for bad input,
500 for that request alone); error messages are short and echo no more than a few characters of the input.
"""

# No ``from __future__ import annotations``: FastAPI reads the request models (local classes) from the
# endpoint annotations at run time.
import asyncio
import json
import logging
import time
from dataclasses import dataclass

from translrec_dist.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1 << 20  # a history of 200 items of 5,000 characters fits
    max_item_chars: int = 5000  # per history item, user id or item id: a tokenizer reads max_length tokens anyway
    max_history: int = 200  # history items per request (the model reads its most recent ones)


class MicroBatcher:
    """Collects calls for up to ``max_wait_ms`` (or ``max_batch`` calls) and runs ``fn(list)`` once, off the
    event loop; each caller gets its own element of the result (an exception element is raised to it)."""

    def __init__(self, fn, max_batch: int = 64, max_wait_ms: float = 5.0, metrics: "Metrics | None" = None):
        self.fn, self.max_batch, self.max_wait, self.metrics = fn, max_batch, max_wait_ms / 1000, metrics
        self.queue: asyncio.Queue | None = None
        self.worker: asyncio.Task | None = None
        self.batches = self.requests = self.largest = 0

    async def submit(self, item):
        loop = asyncio.get_running_loop()
        if self.worker is None or self.worker.done() or self.worker.get_loop() is not loop:
            # created lazily (the queue belongs to the running event loop), again if that loop changed
            self.queue = asyncio.Queue()
            self.worker = loop.create_task(self.run())
        future = loop.create_future()
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
            if self.metrics is not None:
                self.metrics.observe("translrec_batch_size", len(batch))
            try:
                results = await asyncio.to_thread(self.fn, [item for item, _ in batch])
            except Exception as e:  # noqa: BLE001 - fn answers per item; this is its own failure
                log.exception("batch failed")
                results = [e] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)


class Metrics:
    """Counters and histograms in the Prometheus text format (a few lines: no client library to install).
    Requests are counted by endpoint and status; latencies in seconds; micro-batch sizes in requests."""

    LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
    BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256)

    def __init__(self):
        self.requests: dict[tuple[str, int], int] = {}
        self.histograms = {"translrec_request_seconds": (self.LATENCY, {}),
                           "translrec_batch_size": (self.BATCH, {})}

    def observe(self, name: str, value: float, label: str = "") -> None:
        bounds, series = self.histograms[name]
        counts, total = series.setdefault(label, ([0] * (len(bounds) + 1), [0.0]))
        counts[next((i for i, b in enumerate(bounds) if value <= b), len(bounds))] += 1
        total[0] += value

    def request(self, path: str, status: int, seconds: float) -> None:
        self.requests[(path, status)] = self.requests.get((path, status), 0) + 1
        self.observe("translrec_request_seconds", seconds, path)

    def text(self) -> str:
        lines = ["# TYPE translrec_requests_total counter"]
        lines += [f'translrec_requests_total{{path="{p}",status="{s}"}} {n}'
                  for (p, s), n in sorted(self.requests.items())]
        for name, (bounds, series) in self.histograms.items():
            lines.append(f"# TYPE {name} histogram")
            for label, (counts, total) in sorted(series.items()):
                tag = f'path="{label}",' if label else ""
                running = 0
                for bound, count in zip([*bounds, "+Inf"], counts, strict=True):
                    running += count
                    lines.append(f'{name}_bucket{{{tag}le="{bound}"}} {running}')
                lines.append(f"{name}_sum{{{tag[:-1]}}} {total[0]}" if tag else f"{name}_sum {total[0]}")
                lines.append(f"{name}_count{{{tag[:-1]}}} {running}" if tag else f"{name}_count {running}")
        return "\n".join(lines) + "\n"


class BodyLimit:
    """ASGI wrapper: a body over ``limit`` bytes is answered 413 before the application reads it (by its
    Content-Length, or while it streams in), and the body is never held beyond the limit."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self.too_large(send)
        chunks, size, more = [], 0, True
        while more:  # read the body here (at most ``limit`` bytes), then hand it to the app as one message
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, receive, send)  # a disconnect: let the app see it
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self.too_large(send)
            more = message.get("more_body", False)
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    async def too_large(self, send):
        body = json.dumps({"detail": f"request body over the limit of {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def describe_validation(errors: list[dict]) -> str:
    """pydantic's errors as one short line, without the input (FastAPI's default echoes it whole)."""
    parts = []
    for e in errors[:3]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg", "invalid")))
    return "; ".join(parts)[:300]


def build_app(rec, max_batch: int = 64, max_wait_ms: float = 5.0, limits: Limits = Limits()):
    from typing import Annotated

    from fastapi import FastAPI, HTTPException
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse
    from pydantic import BaseModel, ConfigDict, Field, model_validator

    # pydantic refuses a lone surrogate ("\ud800": valid JSON, no text a tokenizer reads) as a 422 itself
    Text = Annotated[str, Field(max_length=limits.max_item_chars)]

    class RecommendRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        user: Text | None = None
        history: list[Text] | None = Field(None, min_length=1, max_length=limits.max_history)
        top_k: int = Field(10, ge=1, le=1000)
        exclude_seen: bool = False

        @model_validator(mode="after")
        def one_of(self):
            if (self.user is None) == (self.history is None):
                raise ValueError("give exactly one of 'user' (a user id) or 'history' (item texts, newest first)")
            return self

    class ExplainRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        user: Text
        item: Text

    class Item(BaseModel):
        item_id: str
        title: str
        score: float = Field(description="inner product of the user and item vectors (higher: better)")

    class RecommendResponse(BaseModel):
        items: list[Item] = Field(description="best first")

    class Contribution(BaseModel):
        item_id: str
        title: str
        position: int = Field(description="0: the newest history item")
        score_without: float | None = Field(description="the item's score without this history item (None: it "
                                                        "was the only one)")
        drop: float | None = Field(description="score - score_without: how much this history item supports it")

    class ExplainResponse(BaseModel):
        user: str
        item: str
        score: float
        history: list[Contribution] = Field(description="largest drop first")

    class Health(BaseModel):
        status: str
        task: str
        items: int
        backend: str
        batches: int = Field(description="micro-batches run since start")
        requests: int = Field(description="/recommend requests answered in them")
        largest_batch: int

    rec.ensure_index()
    metrics = Metrics()
    batcher = MicroBatcher(rec.recommend_batch, max_batch, max_wait_ms, metrics)
    app = FastAPI(title="translrec", description=f"task={rec.cfg.task} recommender")

    @app.middleware("http")
    async def count(request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        if request.url.path in ("/recommend", "/explain", "/healthz"):  # not one series per unknown path
            metrics.request(request.url.path, response.status_code, time.perf_counter() - started)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        return JSONResponse(status_code=422, content={"detail": describe_validation(exc.errors())})

    def answer(e: Exception) -> HTTPException:
        if isinstance(e, DataError):
            return HTTPException(status_code=404 if str(e).startswith("unknown") else 400, detail=str(e)[:300])
        log.error("request failed: %s: %s", type(e).__name__, e)
        return HTTPException(status_code=500, detail=f"internal error ({type(e).__name__}); see the server log")

    @app.post("/recommend", response_model=RecommendResponse)
    async def recommend(request: RecommendRequest) -> dict:
        try:
            items = await batcher.submit(request.model_dump())
        except Exception as e:  # noqa: BLE001 - this request's own failure
            raise answer(e) from None
        return {"items": items}

    @app.post("/explain", response_model=ExplainResponse)
    async def explain(request: ExplainRequest) -> dict:
        try:
            return await asyncio.to_thread(rec.explain, request.user, request.item)
        except Exception as e:  # noqa: BLE001 - this request's own failure
            raise answer(e) from None

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> str:
        return metrics.text()

    @app.get("/healthz", response_model=Health)
    async def healthz() -> dict:
        return {"status": "ok", "task": rec.cfg.task, "items": len(rec.item_ids),
                "backend": rec.search_index.backend, "batches": batcher.batches, "requests": batcher.requests,
                "largest_batch": batcher.largest}

    return BodyLimit(app, limits.max_body_bytes)


def serve(rec, host: str, port: int, max_batch: int = 64, max_wait_ms: float = 5.0,
          limits: Limits = Limits()) -> None:
    """``rec``: a Recommender with its index loaded (``program.load_recommender``)."""
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("translrec serve needs FastAPI and uvicorn: pip install 'translrec-dist[serve]'") from None
    app = build_app(rec, max_batch, max_wait_ms, limits)
    log.info("serving %s (%d items) on http://%s:%d", rec.model_dir, len(rec.item_ids), host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning")
