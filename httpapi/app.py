"""The FastAPI app, its access log, and `serve` (uvicorn), as `voicemail serve` runs it."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.core.connections import redis_client
from worker.core.logs import install_redaction, use_json
from worker.core.settings import get_settings

from . import bulks, jobs, problems

logger = logging.getLogger("httpapi.access")
# Routes are plain functions run in a thread pool (the producer API blocks on Redis); a
# long poll (`?wait=`) holds a thread while it waits, so allow more than anyio's 40.
THREADS = 200


class AccessLog:
    """One INFO line a request: method, path, status, API key name, latency. Never the
    key itself, nor the query string or headers, which a caller may fill with anything."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the caller gets if the app raises before answering

        async def send_and_see(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_see)
        finally:
            # `auth.caller` leaves the key's name in the request state once it is checked.
            name = scope.get("state", {}).get("api_key", "-")
            logger.info(
                "%s %s %d key=%s %.1fms",
                scope["method"],
                scope["path"],
                status,
                name,
                (time.perf_counter() - started) * 1000,
            )


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    anyio.to_thread.current_default_thread_limiter().total_tokens = THREADS
    yield
    app.state.redis.close()


def create_app() -> FastAPI:
    app = FastAPI(
        title="voicemail-worker",
        version="1",
        summary="Read and change Plusofon voicemail settings through the job queue.",
        description="Send `Authorization: Bearer KEY` (from `voicemail apikeys add`). "
        "Errors are RFC 9457 application/problem+json; `type` names the error as the "
        "Python API's exception does.",
        lifespan=_lifespan,
    )
    # Our own client for API keys and owners: the producer's is private to it.
    app.state.redis = redis_client(get_settings().redis_url)
    problems.install(app)
    app.include_router(jobs.router)
    app.include_router(bulks.router)
    app.add_middleware(AccessLog)
    return app


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    install_redaction()
    if get_settings().log_json:
        use_json()


def serve(host: str, port: int, workers: int = 1) -> None:
    configure_logging()
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "access_log": False,  # ours names the caller; uvicorn's would be a second line
        "log_config": None,  # keep the root logger set up above (redaction, JSON)
        "proxy_headers": False,
    }
    if workers > 1:
        # Several processes need the app by name, each building its own.
        uvicorn.run("httpapi.app:create_app", factory=True, workers=workers, **options)
    else:
        uvicorn.run(create_app(), **options)
