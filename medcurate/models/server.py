"""A small OpenAI-compatible server for any ``Generator``: the ``vllm serve`` API without vLLM.

CPU machines serve a transformers model to a fleet of HTTP clients with it, and tests get a real server
to point ``HttpGenerator`` at. It speaks the subset medcurate sends: ``/v1/chat/completions`` with a
system message, a user message of text and at most one ``data:`` image, ``response_format``
json_schema, ``max_tokens``/``temperature``/``top_p``/``seed``/``min_tokens``. It refuses what would go
silently wrong: ``guided_*`` fields (vLLM 0.33 ignores them, so the answer would be unconstrained),
``http(s)`` image URLs (the server never fetches), oversized bodies and decompression-bomb images.

Requests are batched like a real server does: one worker thread takes everything queued (up to the
generator's ``batch_size``, waiting a few ms for more) and calls ``generate`` once per group of equal
sampling parameters; requests that arrive meanwhile form the next batch.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from PIL import Image

from medcurate.models.base import EndpointUnavailable, GenerationRequest, Generator, OutOfMemory, Sampling
from medcurate.models.spec import ModelSpec
from medcurate.models.structured import generate_batched

MAX_BODY_BYTES = 20 * 1024 * 1024
#: Pillow's own limit (~89 Mpx): larger headers are refused before any pixel is decoded.
MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
MAX_WAIT_S = 0.005


def _bad(message: str, status: int = 400) -> HTTPException:
    return HTTPException(status, message)


@dataclass
class _Batcher:
    """The queue between request handlers (event loop) and the one thread that runs the model."""

    generator: Generator
    max_batch: int
    max_wait_s: float
    queue: queue.Queue = field(default_factory=queue.Queue)
    thread: threading.Thread | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def submit(self, request: GenerationRequest, sampling: Sampling) -> Future:
        with self.lock:  # started lazily too, so an app used without its lifespan still answers
            if self.thread is None or not self.thread.is_alive():
                self.stopping.clear()
                self.thread = threading.Thread(target=self._run, name="medcurate-batcher", daemon=True)
                self.thread.start()
        future: Future = Future()
        self.queue.put((request, sampling, future))
        return future

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=5)

    def _take(self) -> list[tuple[GenerationRequest, Sampling, Future]]:
        """Everything queued, up to ``max_batch``, after waiting at most ``max_wait_s`` for more."""
        try:
            items = [self.queue.get(timeout=0.2)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.max_wait_s
        while len(items) < self.max_batch:
            try:
                items.append(self.queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        # A handler whose client went away cancelled its future; skip it instead of computing it.
        return [item for item in items if item[2].set_running_or_notify_cancel()]

    def _run(self) -> None:
        while not self.stopping.is_set():
            groups: dict[Sampling, list[tuple[GenerationRequest, Future]]] = {}
            for request, sampling, future in self._take():
                groups.setdefault(sampling, []).append((request, future))
            for sampling, items in groups.items():
                try:
                    # Halves the batch when memory runs out, like the stages do.
                    answers = generate_batched(self.generator, [r for r, _ in items], sampling, len(items))
                except Exception as exc:  # every waiting handler must hear of it
                    for _, future in items:
                        future.set_exception(exc)
                    continue
                for (_, future), answer in zip(items, answers, strict=True):
                    future.set_result(answer)


def _text(content: Any, role: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "\n".join(str(p.get("text", "")) for p in content)
    raise _bad(f"{role} message content must be text")


def _image(url: Any, max_pixels: int) -> bytes:
    """The bytes of a ``data:`` URL image, after checking its header declares a sane size."""
    url = url.get("url") if isinstance(url, dict) else url
    if not isinstance(url, str) or not url.startswith("data:"):
        raise _bad(
            "image_url must be a data: URL (data:image/png;base64,...); this server does not fetch URLs"
        )
    header, comma, payload = url.partition(",")
    if not comma or not header.endswith(";base64"):
        raise _bad("image_url data: URL must be base64-encoded (data:<mime>;base64,<data>)")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _bad(f"image_url data: URL is not valid base64: {exc}") from None
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only; refuses > 2x Pillow's limit
            width, height = image.size
    except Image.DecompressionBombError as exc:
        raise _bad(f"image refused as a decompression bomb: {exc}") from None
    except Exception as exc:  # Pillow raises many types for undecodable bytes
        raise _bad(f"image_url does not hold a decodable image: {exc}") from None
    if width * height > max_pixels:
        raise _bad(f"image is {width}x{height}, over the limit of {max_pixels} pixels")
    return data


def parse_chat(body: Any, model_name: str, max_pixels: int) -> tuple[GenerationRequest, Sampling]:
    """An OpenAI chat-completions body -> what a ``Generator`` takes; every refusal says why."""
    if not isinstance(body, dict):
        raise _bad("request body must be a JSON object")
    guided = sorted(k for k in body if k.startswith("guided_"))
    if guided:
        raise _bad(
            f"{', '.join(guided)} not supported: vLLM 0.33 silently ignores guided_* fields; send "
            'response_format={"type": "json_schema", "json_schema": {"name": ..., "schema": ...}} instead'
        )
    if body.get("model") not in (None, model_name):
        raise _bad(f"The model `{body['model']}` does not exist; this server serves `{model_name}`", 404)
    if body.get("stream") or (body.get("n") or 1) != 1:
        raise _bad("stream and n > 1 are not supported")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must be a non-empty list")
    system, texts, image = None, [], None
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        if role == "system" and system is None:
            system = _text(message.get("content"), role)
        elif role == "user":
            content = message.get("content")
            for part in [{"type": "text", "text": content}] if isinstance(content, str) else content or []:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text":
                    texts.append(str(part.get("text", "")))
                elif kind == "image_url" and image is None:
                    image = _image(part.get("image_url"), max_pixels)
                else:
                    raise _bad(f"user content part {kind!r} not supported (text and one image_url)")
        else:
            raise _bad(f"message role {role!r} not supported: one system and user messages only")
    schema = None
    response_format = body.get("response_format") or {"type": "text"}
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise _bad("response_format.json_schema.schema must be a JSON schema object")
    elif kind == "json_object":
        schema = {"type": "object"}
    elif kind != "text":
        raise _bad(f"response_format type {kind!r} not supported (text, json_object, json_schema)")
    defaults = Sampling()  # what medcurate means when a field is left out (OpenAI's defaults differ)
    try:
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or defaults.max_tokens)
        min_tokens = int(body.get("min_tokens") or 0)
        if 0 < min_tokens < max_tokens:
            raise ValueError("min_tokens must be 0 or equal to max_tokens (fixed-length generation)")
        sampling = Sampling(
            max_tokens=max_tokens,
            temperature=float(body.get("temperature", defaults.temperature) or 0.0),
            top_p=float(body.get("top_p", defaults.top_p) or defaults.top_p),
            seed=int(body.get("seed") or 0),
            fixed_length=min_tokens >= max_tokens,
        )
    except (TypeError, ValueError) as exc:
        raise _bad(f"bad sampling parameter: {exc}") from None
    return GenerationRequest("\n".join(texts), image, system, schema), sampling


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` (declared or streamed)."""
    if int(request.headers.get("content-length") or 0) > limit:
        raise _bad(f"request body over {limit} bytes", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _bad(f"request body over {limit} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    generator: Generator,
    model_name: str,
    *,
    root: str | None = None,
    max_batch: int | None = None,
    max_wait_s: float = MAX_WAIT_S,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_image_pixels: int = MAX_IMAGE_PIXELS,
) -> FastAPI:
    """An app serving ``generator`` as ``model_name``; ``app.state.batcher`` runs the model."""
    batcher = _Batcher(generator, max(1, max_batch or generator.batch_size), max_wait_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        batcher.stop()

    app = FastAPI(title="medcurate model server", lifespan=lifespan)
    app.state.batcher = batcher

    @app.exception_handler(HTTPException)
    async def openai_error(_: Request, exc: HTTPException) -> JSONResponse:
        """Errors in the OpenAI/vLLM shape, so any client prints the message."""
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        error = {"message": str(exc.detail), "type": kind, "code": exc.status_code}
        return JSONResponse({"error": error}, status_code=exc.status_code)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = {"id": model_name, "object": "model", "owned_by": "medcurate", "root": root or model_name}
        return {"object": "list", "data": [{**card, "created": int(time.time())}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        raw = await _read_body(request, max_body_bytes)
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise _bad(f"request body is not JSON: {exc}") from None
        parsed, sampling = parse_chat(body, model_name, max_image_pixels)
        try:
            answer = await asyncio.wrap_future(batcher.submit(parsed, sampling))
        except OutOfMemory as exc:
            raise _bad(f"out of memory even for a single request: {exc}", 507) from None
        except EndpointUnavailable as exc:
            raise _bad(str(exc), 503) from None
        except ValueError as exc:  # the generator cannot use this request (e.g. an undecodable image)
            raise _bad(f"request cannot be served: {exc}") from None
        except Exception as exc:  # the client deserves the reason, not a bare 500
            raise _bad(f"generation failed: {type(exc).__name__}: {exc}", 500) from None
        usage = {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.output_tokens}
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.text},
                    "finish_reason": answer.finish_reason or "stop",
                }
            ],
            "usage": {**usage, "total_tokens": answer.prompt_tokens + answer.output_tokens},
        }

    return app


def serve(spec: ModelSpec, host: str = "127.0.0.1", port: int = 8000, model_name: str | None = None) -> None:
    """Load ``spec``'s generator and serve it until interrupted (loopback only unless ``host`` says so)."""
    import uvicorn

    from medcurate.models.registry import load_generator

    app = create_app(load_generator(spec), model_name or spec.name, root=spec.path)
    uvicorn.run(app, host=host, port=port, log_level="warning")
