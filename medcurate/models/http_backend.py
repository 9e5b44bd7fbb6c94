"""Generation through an OpenAI-compatible server (``vllm serve``, or ``medcurate.models.server``).

The stage hands over a batch; every request in it goes out at once, at most ``concurrency`` in flight,
so the server's continuous batching sees a full queue. A thread pool and one shared ``httpx.Client``
do the I/O: no event loop is created or assumed, so the same code runs in a plain thread, a Prefect
task and a Spark Python worker (which may fork: pool and client are rebuilt in a forked child).

Failures split in two. A request the server refuses (HTTP 4xx but 429) is wrong and would be refused
again, so it fails at once with the server's message. Anything transient (connection refused or
dropped, timeout, 429, 5xx) is retried with capped exponential backoff; when retries run out the
endpoint counts as down and ``EndpointUnavailable`` (a ``ConnectionError``) lets the flow retry the
task later. Output is returned as text even when it is not valid JSON: ``structured.py`` validates it
and retries once, the same for every backend.

Options (``models.<role>.options``): ``concurrency`` (16), ``timeout_s`` (120, per request),
``retries`` (3), ``backoff_s`` (0.5, first backoff, doubled per retry, capped at 10 s),
``api_key_env`` (name of an env var holding a bearer token), ``served_model`` (default: the only model
the server lists), ``batch_size`` (64).
"""

from __future__ import annotations

import base64
import os
import random
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import httpx

from medcurate.models.base import EndpointUnavailable, Generation, GenerationRequest, Generator, Sampling
from medcurate.models.spec import ModelError, ModelSpec

#: Transient HTTP statuses: overload (429), gateway trouble and server errors.
RETRY_STATUS = frozenset({408, 429}) | frozenset(range(500, 600))
BACKOFF_CAP_S = 10.0
IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)


class _Transient(Exception):  # noqa: N818 - internal signal, never escapes
    """A failure worth retrying; carries the text that ends up in ``EndpointUnavailable``."""


class _Stopped(Exception):  # noqa: N818 - internal signal, never escapes
    """Another request of the same call failed for good, so this one gives up quietly."""


def image_data_url(image: bytes) -> str:
    """A ``data:`` URL with the MIME type sniffed from the bytes (servers decode, they never fetch)."""
    mime = next((m for magic, m in IMAGE_MAGIC if image.startswith(magic)), None)
    if mime is None and image[:4] == b"RIFF" and image[8:12] == b"WEBP":
        mime = "image/webp"
    return f"data:{mime or 'application/octet-stream'};base64,{base64.b64encode(image).decode()}"


def chat_messages(request: GenerationRequest) -> list[dict[str, Any]]:
    """OpenAI-style messages for one request: what the servers and vLLM's ``LLM.chat`` both take."""
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    content: Any = request.prompt
    if request.image is not None:
        image_part = {"type": "image_url", "image_url": {"url": image_data_url(request.image)}}
        content = [image_part, {"type": "text", "text": request.prompt}]
    messages.append({"role": "user", "content": content})
    return messages


def chat_body(request: GenerationRequest, sampling: Sampling, model: str) -> dict[str, Any]:
    """The ``/chat/completions`` body vLLM 0.33 honours: ``response_format`` (``guided_json`` is ignored)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": chat_messages(request),
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "seed": sampling.seed,
    }
    if sampling.fixed_length:
        body["min_tokens"] = sampling.max_tokens
    if request.schema is not None:
        name = re.sub(r"[^A-Za-z0-9_-]+", "_", str(request.schema.get("title") or "answer"))[:64] or "answer"
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": dict(request.schema), "strict": True},
        }
    return body


def _server_message(response: httpx.Response) -> str:
    """The error text from vLLM (``{"error": {"message"}}`` or ``{"message"}``) or FastAPI (``detail``)."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
        for key in ("message", "detail", "error"):
            if data.get(key):
                return str(data[key])[:500]
    return str(data)[:500]


class HttpGenerator(Generator):
    """A ``Generator`` whose model runs behind an OpenAI-compatible HTTP endpoint."""

    backend = "http"

    def __init__(self, spec: ModelSpec):
        if not spec.endpoint or not spec.endpoint.startswith(("http://", "https://")):
            raise ModelError(
                f"model {spec.role}: http endpoint must be http(s)://HOST:PORT/v1, got {spec.endpoint!r}"
            )
        options: Mapping[str, Any] = spec.options or {}
        self.spec = spec
        self.endpoint = spec.endpoint.rstrip("/")
        self.concurrency = max(1, int(options.get("concurrency", 16)))
        self.timeout_s = float(options.get("timeout_s", 120))
        self.retries = max(0, int(options.get("retries", 3)))
        self.backoff_s = float(options.get("backoff_s", 0.5))
        self.batch_size = max(1, int(options.get("batch_size", 64)))
        self.served_model: str | None = options.get("served_model")
        self._headers = {"Accept": "application/json"}
        if key_env := options.get("api_key_env"):
            if not os.environ.get(key_env):
                raise ModelError(
                    f"model {spec.role}: api_key_env names {key_env!r}, which is not set or empty"
                )
            self._headers["Authorization"] = f"Bearer {os.environ[key_env]}"
        self._lock = threading.Lock()
        self._pid = -1
        self._client: httpx.Client | None = None
        self._pool: ThreadPoolExecutor | None = None

    # -- plumbing ------------------------------------------------------------------------------------

    def _resources(self) -> tuple[httpx.Client, ThreadPoolExecutor]:
        """Client and pool of this process; a forked child (Spark worker) must not reuse its parent's."""
        with self._lock:
            if self._pid != os.getpid() or self._client is None or self._pool is None:
                timeout = httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 10.0))
                limits = httpx.Limits(
                    max_connections=self.concurrency, max_keepalive_connections=self.concurrency
                )
                self._client = httpx.Client(headers=self._headers, timeout=timeout, limits=limits)
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="medcurate-http")
                self._pid = os.getpid()
            return self._client, self._pool

    def _call(
        self, method: str, path: str, body: Any = None, key: int = 0, stop: threading.Event | None = None
    ):
        """One HTTP exchange with retries; the parsed JSON of a 2xx answer."""
        client, _ = self._resources()
        stop = stop or threading.Event()
        url = f"{self.endpoint}{path}"
        rng = random.Random(key)  # deterministic jitter: reruns wait alike, requests spread out
        last = ""
        for attempt in range(self.retries + 1):
            if stop.is_set():
                raise _Stopped
            pause = None
            try:
                response = client.request(method, url, json=body)
            except httpx.TimeoutException as exc:
                last = f"no answer within timeout_s={self.timeout_s:g} s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    try:
                        return response.json()
                    except ValueError as exc:
                        raise RuntimeError(
                            f"{url} answered HTTP {response.status_code} with a body that is not JSON "
                            f"(is the endpoint an OpenAI-compatible /v1 base URL?): {response.text[:200]!r}"
                        ) from exc
                last = f"HTTP {response.status_code}: {_server_message(response)}"
                if response.status_code not in RETRY_STATUS:
                    raise RuntimeError(f"{url} refused the request ({last})")
                retry_after = response.headers.get("Retry-After", "")
                pause = float(retry_after) if retry_after.replace(".", "", 1).isdigit() else None
            if attempt < self.retries:
                backoff = min(BACKOFF_CAP_S, self.backoff_s * 2**attempt) * rng.uniform(0.5, 1.0)
                delay = min(BACKOFF_CAP_S, max(pause or 0.0, backoff))
                if stop.wait(delay):
                    raise _Stopped
        raise _Transient(f"{method} {url} failed {self.retries + 1} time(s); last: {last}")

    def _unavailable(self, exc: _Transient) -> EndpointUnavailable:
        return EndpointUnavailable(
            f"model endpoint {self.endpoint} is unavailable ({exc}); the task will be retried"
        )

    def _model(self) -> str:
        """The served model name: configured, or the only one ``GET /models`` lists (asked once)."""
        if self.served_model:
            return self.served_model
        try:
            listing = self._call("GET", "/models")
        except _Transient as exc:
            raise self._unavailable(exc) from None
        models = [m for m in listing.get("data", []) if isinstance(m, dict) and m.get("id")]
        if len(models) != 1:
            # Several served: take the one named like the configured weights, when exactly one is.
            named = [m for m in models if self.spec.name in (m["id"], Path(str(m.get("root", ""))).name)]
            if len(named) != 1:
                ids = ", ".join(m["id"] for m in models) or "none"
                raise ModelError(
                    f"{self.endpoint}/models lists {len(models)} model(s) ({ids}); set "
                    f"models.{self.spec.role}.options.served_model to the one to use"
                )
            models = named
        self.served_model = str(models[0]["id"])
        return self.served_model

    def _one(self, index: int, body: dict[str, Any], stop: threading.Event) -> Generation:
        try:
            return self._answer(self._call("POST", "/chat/completions", body, key=index, stop=stop))
        except _Stopped:
            raise
        except Exception:
            stop.set()  # before this future completes, so no queued request of this call goes out
            raise

    def _answer(self, data: Any) -> Generation:
        try:
            choice = data["choices"][0]
            usage = data.get("usage") or {}
            return Generation(
                text=choice["message"].get("content") or "",
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                output_tokens=int(usage.get("completion_tokens") or 0),
                finish_reason=choice.get("finish_reason"),
            )
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise RuntimeError(
                f"{self.endpoint} answered without choices[0].message: {str(data)[:200]}"
            ) from exc

    # -- Generator -----------------------------------------------------------------------------------

    def generate(self, requests: Sequence[GenerationRequest], sampling: Sampling) -> list[Generation]:
        """All requests in flight at once (bounded), answers in request order; first hard failure wins."""
        if not requests:
            return []
        model = self._model()
        _, pool = self._resources()
        stop = threading.Event()
        futures = [
            pool.submit(self._one, i, chat_body(r, sampling, model), stop) for i, r in enumerate(requests)
        ]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        failures = [f.exception() for f in futures if f in done and f.exception() is not None]
        failures = [e for e in failures if not isinstance(e, _Stopped)]
        if failures:
            stop.set()  # queued requests are dropped, retrying ones give up at their next pause
            for future in pending:
                future.cancel()
            first = failures[0]
            if isinstance(first, _Transient):
                raise self._unavailable(first) from None
            raise first
        return [f.result() for f in futures]

    def close(self) -> None:
        """Drop connections and threads; a later ``generate`` builds new ones."""
        with self._lock:
            if self._pid == os.getpid():
                if self._pool is not None:
                    self._pool.shutdown(wait=False, cancel_futures=True)
                if self._client is not None:
                    self._client.close()
            self._client = self._pool = None
