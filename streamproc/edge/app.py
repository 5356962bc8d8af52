"""The edge's ASGI application: a handful of routes, no framework.

``POST /webhooks/<provider>``: verify, publish verbatim to the raw topic, answer 200 only
after Kafka acknowledged. ``GET /healthz``, ``/readyz``, ``/metrics`` for operators.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping

from streamproc.edge.dedupe import RecentEvents
from streamproc.edge.errors import (
    EdgeError,
    MethodNotAllowed,
    NotFound,
    RequestTimeout,
    UnknownProvider,
    UnsupportedMediaType,
)
from streamproc.edge.http import (
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    header_map,
    read_body,
    send_bytes,
    send_error,
    send_json,
)
from streamproc.edge.metrics import EdgeMetrics
from streamproc.edge.publisher import RawEventPublisher
from streamproc.providers import Provider, Verification, enabled_providers
from streamproc.providers.base import Accepted
from streamproc.providers.errors import ProviderError, SignatureError
from streamproc.settings import Settings

log = logging.getLogger(__name__)
WEBHOOK_PREFIX = "/webhooks/"
JSON_TYPES = (b"application/json", b"text/json")


def _status_of(error: ProviderError) -> int:
    """Authentication failures are 401; every other provider refusal is the client's 400."""
    return 401 if isinstance(error, SignatureError) else 400


def _is_json(content_type: bytes | None) -> bool:
    if content_type is None:
        return False
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type in JSON_TYPES or media_type.endswith(b"+json")


class EdgeApp:
    def __init__(
        self,
        settings: Settings,
        providers: Mapping[str, Provider] | None = None,
        metrics: EdgeMetrics | None = None,
        publisher: RawEventPublisher | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or EdgeMetrics()
        self.publisher = publisher or RawEventPublisher(settings, self.metrics)
        if providers is None:
            providers = enabled_providers(settings)  # a mapped provider too
        self.providers = {
            name: provider
            for name, provider in providers.items()
            if settings.secrets_for(name) or provider.unsigned_verification
        }
        self.recent = RecentEvents(settings.dedupe_window_s, settings.dedupe_max_entries)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.publisher.start()
                await send({"type": "lifespan.startup.complete"})
                log.info("edge process %d ready", os.getpid())
            elif message["type"] == "lifespan.shutdown":
                await self.publisher.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            if path.startswith(WEBHOOK_PREFIX):
                await self._webhook(path.removeprefix(WEBHOOK_PREFIX), scope, receive, send)
            elif path in ("/healthz", "/readyz", "/metrics"):
                if method not in ("GET", "HEAD"):
                    raise MethodNotAllowed(f"{path} answers GET, not {method}", "GET")
                await self._probe(path, send)
            else:
                raise NotFound(f"no route for {path}")
        except EdgeError as error:
            await send_error(send, error.status, error.code, str(error), error.headers)
        except ClientDisconnected:
            return
        except Exception:  # our bug: log it, answer in the usual shape
            log.exception("unexpected error on %s %s", method, path)
            await send_error(send, 500, "internal_error", "the edge failed; this is a bug")

    async def _probe(self, path: str, send: Send) -> None:
        if path == "/healthz":
            await send_json(send, 200, {"status": "alive"})
        elif path == "/metrics":
            await send_bytes(send, 200, self.metrics.render(), self.metrics.content_type)
        elif await self.publisher.ready():
            await send_json(send, 200, {"status": "ready"})
        else:
            await send_json(send, 503, {"status": "unavailable", "error": "broker_unavailable"})

    async def _webhook(self, name: str, scope: Scope, receive: Receive, send: Send) -> None:
        provider = self.providers.get(name)
        if provider is None:
            known = ", ".join(sorted(self.providers)) or "none"
            raise UnknownProvider(f"unknown or unconfigured provider {name!r}; enabled: {known}")
        outcome = "error"
        try:
            outcome = await self._accept(provider, scope, receive, send)
        except EdgeError as error:
            outcome = error.code
            raise
        except ProviderError as error:
            outcome = error.code
            await send_error(send, _status_of(error), error.code, str(error))
        finally:
            self.metrics.requests.labels(provider.name, outcome).inc()

    async def _accept(self, provider: Provider, scope: Scope, receive: Receive, send: Send) -> str:
        if scope["method"] != "POST":
            raise MethodNotAllowed(f"webhooks are POSTed, not {scope['method']}", "POST")
        headers = header_map(scope)
        if not _is_json(headers.get(b"content-type")):
            given = headers.get(b"content-type", b"none").decode("latin-1")
            raise UnsupportedMediaType(f"content type {given!r} is not application/json")
        try:
            async with asyncio.timeout(self.settings.body_timeout_s):
                body = await read_body(receive, headers, self.settings.max_body_bytes)
        except TimeoutError:
            raise RequestTimeout(
                f"the body did not arrive within {self.settings.body_timeout_s:g} s"
            ) from None
        secrets = self.settings.secrets_for(provider.name)
        received_at = time.time()
        result = provider.accept(
            headers, body, secrets, received_at, self.settings.timestamp_tolerance_s
        )
        if isinstance(result, Verification):
            await send_json(send, 200, {"status": "verified"})
            return "verification"
        published = await self.recent.once(
            f"{provider.name}:{result.identity.event_id}",
            lambda: self._publish(provider, result, body, received_at),
        )
        outcome = "published" if published else "duplicate"
        await send_json(send, 200, {"status": outcome, "event_id": result.identity.event_id})
        return outcome

    async def _publish(
        self, provider: Provider, accepted: Accepted, body: bytes, received_at: float
    ) -> None:
        identity = accepted.identity
        headers = [
            ("provider", provider.name.encode()),
            ("event-id", identity.event_id.encode()),
            ("event-type", identity.event_type.encode()),
            ("received-at", f"{received_at:.6f}".encode()),
            ("verified-by", accepted.key_id.encode()),
        ]
        await self.publisher.publish(identity.key.encode(), body, headers)
