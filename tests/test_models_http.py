"""The HTTP backend against real servers on 127.0.0.1: our OpenAI-compatible server, and small FastAPI
apps that misbehave on purpose (slow, invalid JSON, 4xx, 5xx, gone), so retries, timeouts and errors
are exercised over real sockets. Timeouts, retries and backoff are tiny to keep every failure fast."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image

from medcurate.models.base import EndpointUnavailable, Generation, GenerationRequest, Generator, Sampling
from medcurate.models.http_backend import HttpGenerator
from medcurate.models.server import create_app
from medcurate.models.spec import ModelError, ModelSpec
from medcurate.models.structured import generate_structured

SCHEMA = {
    "title": "finding",
    "type": "object",
    "properties": {"finding": {"type": "string"}},
    "required": ["finding"],
}


class EchoGenerator(Generator):
    """A real ``Generator`` that answers deterministic JSON about each request and records its batches."""

    backend = "echo"

    def __init__(self, delay: float = 0.0, batch_size: int = 16):
        self.delay, self.batch_size = delay, batch_size
        self.batches: list[int] = []
        self.samplings: list[Sampling] = []
        self.on_batch: Callable[[int], None] | None = None

    def generate(self, requests: Sequence[GenerationRequest], sampling: Sampling) -> list[Generation]:
        self.batches.append(len(requests))
        self.samplings.append(sampling)
        time.sleep(self.delay)
        if self.on_batch:
            self.on_batch(len(self.batches))
        return [
            Generation(
                json.dumps(
                    {
                        "finding": r.prompt,
                        "system": r.system,
                        "image": hashlib.sha256(r.image).hexdigest()[:12] if r.image else None,
                        "schema": r.schema is not None,
                    }
                ),
                len(r.prompt.split()),
                7,
                "stop",
            )
            for r in requests
        ]


@contextmanager
def running(app: FastAPI) -> Iterator[tuple[str, uvicorn.Server]]:
    """``app`` served by uvicorn in a thread on a free loopback port (bound first, so no race)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1", server
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_model(endpoint: str, **options: Any) -> HttpGenerator:
    options = {"retries": 1, "timeout_s": 2, "backoff_s": 0.01, "served_model": "m", **options}
    options = {k: v for k, v in options.items() if v is not None}
    return HttpGenerator(ModelSpec("caption", "/models/echo", "http", "0" * 64, endpoint, options))


def completion(text: str) -> dict[str, Any]:
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    return {"choices": [choice], "usage": {"prompt_tokens": 5, "completion_tokens": 3}}


def fault_app(answer: Callable[[int, dict], Awaitable[Any]], models: Sequence[str] = ("m",)) -> FastAPI:
    """A server whose chat answers come from ``answer(call_number, body)``; ``app.state.calls`` logs them."""
    app = FastAPI()
    app.state.calls = []

    @app.get("/v1/models")
    async def listing() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "root": f"/srv/{name}"} for name in models]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        app.state.calls.append((await request.json(), dict(request.headers)))
        return await answer(len(app.state.calls), app.state.calls[-1][0])

    return app


def png(size: int = 8, color: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` pixels and holds none: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_concurrent_requests_answered_in_order_and_batched_by_the_server():
    echo = EchoGenerator(delay=0.03)
    image = png()
    requests = [
        GenerationRequest(f"q{i}", image if i % 3 == 0 else None, "be brief" if i % 2 else None, SCHEMA)
        for i in range(40)
    ]
    sampling = Sampling(max_tokens=32, temperature=0.5, top_p=0.9, seed=7, fixed_length=True)
    with running(create_app(echo, "echo-model")) as (base, _):
        assert httpx.get(base.removesuffix("/v1") + "/health").json() == {"status": "ok"}
        with closing(http_model(base, concurrency=8, served_model=None)) as model:
            answers = model.generate(requests, sampling)
            first_run = list(echo.batches)
            assert model.served_model == "echo-model"  # discovered from GET /v1/models

            # No event loop is assumed: the same call works inside a running loop and from another thread.
            async def inside_a_loop() -> list[Generation]:
                return model.generate(requests[:2], sampling)

            assert len(asyncio.run(inside_a_loop())) == 2
            box: list[list[Generation]] = []
            worker = threading.Thread(target=lambda: box.append(model.generate(requests[:3], sampling)))
            worker.start()
            worker.join(timeout=10)
            assert len(box[0]) == 3
    digest = hashlib.sha256(image).hexdigest()[:12]
    for i, answer in enumerate(answers):
        data = json.loads(answer.text)
        assert data == {
            "finding": f"q{i}",
            "system": "be brief" if i % 2 else None,
            "image": digest if i % 3 == 0 else None,
            "schema": True,
        }
        assert (answer.prompt_tokens, answer.output_tokens, answer.finish_reason) == (1, 7, "stop")
    assert set(echo.samplings) == {sampling}  # every parameter survived the round trip, min_tokens too
    assert sum(first_run) == 40 and 1 < max(first_run) <= 8  # batched, never more than in flight


def test_slow_server_within_timeout_works_and_beyond_timeout_is_unavailable():
    delay = {"s": 0.2}

    async def slow(_: int, body: dict) -> dict:
        await asyncio.sleep(delay["s"])
        return completion(body["messages"][-1]["content"])

    app = fault_app(slow)
    with running(app) as (base, _):
        with closing(http_model(base, timeout_s=1.0)) as model:
            answers = model.generate([GenerationRequest("a"), GenerationRequest("b")], Sampling())
            assert [a.text for a in answers] == ["a", "b"]
        delay["s"] = 1.5
        app.state.calls.clear()
        with closing(http_model(base, timeout_s=0.3, retries=1)) as model:
            start = time.monotonic()
            with pytest.raises(EndpointUnavailable, match=r"timeout_s=0\.3") as caught:
                model.generate([GenerationRequest("c")], Sampling())
            assert time.monotonic() - start < 1.5
        assert len(app.state.calls) == 2  # tried, then retried once
        assert base in str(caught.value) and "will be retried" in str(caught.value)


def test_invalid_json_is_returned_as_text_and_structured_retries_once():
    async def broken(_: int, body: dict) -> dict:
        return completion("Sure! {finding: effusion")

    app = fault_app(broken)
    with running(app) as (base, _), closing(http_model(base)) as model:
        [outcome] = generate_structured(
            model, [GenerationRequest("describe", schema=SCHEMA)], Sampling(seed=3)
        )
    assert outcome.error.startswith("invalid_json: ") and outcome.raw == "Sure! {finding: effusion"
    assert outcome.attempts == 2 and outcome.output is None
    bodies = [body for body, _ in app.state.calls]
    assert [b["seed"] for b in bodies] == [3, 4]
    for body in bodies:  # the form vLLM 0.33 honours; guided_json would be silently ignored
        assert "guided_json" not in body
        assert body["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "finding", "schema": SCHEMA, "strict": True},
        }


def test_client_errors_fail_at_once_and_transient_errors_are_retried(monkeypatch):
    mode = {"kind": "400"}

    async def answer(call: int, body: dict) -> Any:
        if mode["kind"] == "400":
            return JSONResponse({"error": {"message": "prompt is too long"}}, status_code=400)
        if mode["kind"] == "500":
            return JSONResponse({"detail": "engine dead"}, status_code=500)
        if call == 1:
            return JSONResponse({"error": {"message": "busy"}}, status_code=503, headers={"Retry-After": "0"})
        return JSONResponse({}, status_code=429) if call == 2 else completion("fine")

    monkeypatch.setenv("MEDCURATE_TEST_TOKEN", "s3cret")
    app = fault_app(answer)
    requests = [GenerationRequest(f"q{i}") for i in range(5)]
    with running(app) as (base, _):
        model = http_model(base, concurrency=1, retries=3)
        with closing(model), pytest.raises(RuntimeError, match=r"HTTP 400: prompt is too long"):
            model.generate(requests, Sampling())
        assert len(app.state.calls) == 1  # not retried, and the queued requests were dropped

        mode["kind"], app.state.calls[:] = "flaky", []
        with closing(http_model(base, retries=3, api_key_env="MEDCURATE_TEST_TOKEN")) as model:
            assert model.generate(requests[:1], Sampling())[0].text == "fine"
        assert len(app.state.calls) == 3
        assert {headers["authorization"] for _, headers in app.state.calls} == {"Bearer s3cret"}

        mode["kind"], app.state.calls[:] = "500", []
        model = http_model(base, retries=2)
        with closing(model), pytest.raises(EndpointUnavailable, match=r"HTTP 500: engine dead"):
            model.generate(requests[:1], Sampling())
        assert len(app.state.calls) == 3

    monkeypatch.delenv("MEDCURATE_TEST_TOKEN")
    with pytest.raises(ModelError, match="MEDCURATE_TEST_TOKEN"):
        http_model("http://127.0.0.1:1/v1", api_key_env="MEDCURATE_TEST_TOKEN")


def test_unreachable_endpoint_is_unavailable_within_bounded_time():
    endpoint = f"http://127.0.0.1:{free_port()}/v1"
    for served in (None, "m"):  # model discovery and generation both report it
        with closing(http_model(endpoint, served_model=served, retries=2)) as model:
            start = time.monotonic()
            with pytest.raises(EndpointUnavailable) as caught:
                model.generate([GenerationRequest("q")], Sampling())
            assert time.monotonic() - start < 3
        message = str(caught.value)
        assert endpoint in message and "will be retried" in message and "3 time(s)" in message


def test_server_that_goes_away_mid_run_is_unavailable():
    echo = EchoGenerator(delay=0.05, batch_size=2)
    with running(create_app(echo, "m")) as (base, server):
        echo.on_batch = lambda n: setattr(server, "should_exit", True) if n == 2 else None
        with closing(http_model(base, concurrency=2, retries=2, timeout_s=1)) as model:
            start = time.monotonic()
            with pytest.raises(EndpointUnavailable, match=base):
                model.generate([GenerationRequest(f"q{i}") for i in range(30)], Sampling())
            assert time.monotonic() - start < 5
    assert 2 <= len(echo.batches) < 15


def test_several_served_models_need_a_choice():
    async def never(_: int, body: dict) -> dict:
        raise AssertionError("no chat call expected")

    with running(fault_app(never, models=("a", "b"))) as (base, _):
        with closing(http_model(base, served_model=None)) as model, pytest.raises(ModelError) as caught:
            model.generate([GenerationRequest("q")], Sampling())
        assert "a, b" in str(caught.value) and "served_model" in str(caught.value)
    # Several listed, one named like the configured weights (/models/echo): that one is used.
    other = fault_app(never, models=("other", "echo"))
    with running(other) as (base, _), closing(http_model(base, served_model=None)) as model:
        assert model._model() == "echo"


def test_our_server_refuses_what_would_go_silently_wrong():
    app = create_app(EchoGenerator(), "m", max_body_bytes=100_000, max_image_pixels=10_000)

    def image_message(url: str) -> list[dict]:
        return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]

    def data_url(data: bytes) -> str:
        return "data:image/png;base64," + base64.b64encode(data).decode()

    with running(app) as (base, _), httpx.Client(base_url=base, timeout=5) as client:

        def post(**body: Any) -> httpx.Response:
            return client.post("/chat/completions", json={"model": "m", **body})

        ok = post(messages=[{"role": "user", "content": "hi"}], seed=1)
        assert ok.status_code == 200 and ok.json()["usage"]["total_tokens"] == 8
        refused = {
            "guided_json": post(messages=[{"role": "user", "content": "x"}], guided_json=SCHEMA),
            "fetch": post(messages=image_message("https://example.org/x.png")),
            "bomb": post(messages=image_message(data_url(png_header(20_000, 20_000)))),
            "pixels": post(messages=image_message(data_url(png(200)))),
            "not image": post(messages=image_message(data_url(b"not an image"))),
            "model": client.post("/chat/completions", json={"model": "x", "messages": []}),
            "body": client.post("/chat/completions", content=b"{" + b" " * 200_000 + b"}"),
        }
        status = {name: response.status_code for name, response in refused.items()}
        assert status == {name: 400 for name in refused} | {"model": 404, "body": 413}
        message = {name: response.json()["error"]["message"] for name, response in refused.items()}
        assert "response_format" in message["guided_json"] and "does not fetch" in message["fetch"]
        assert "decompression bomb" in message["bomb"] and "over the limit" in message["pixels"]


def test_tiny_model_served_end_to_end(tmp_path):
    """``medcurate serve-model`` (``serve``) runs the tiny VLM with the transformers backend;
    HttpGenerator and ``generate_structured`` get schema-valid answers from it over HTTP."""
    pytest.importorskip("lmformatenforcer")
    from medcurate.models.tiny import write_tiny_vlm

    model_dir = write_tiny_vlm(tmp_path / "tiny-vlm")
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    command = [sys.executable, "-m", "medcurate.cli", "serve-model", str(model_dir), "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--option", "device=cpu", "--option", "batch_size=4"], stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "server did not become healthy"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        schema = {
            "type": "object",
            "properties": {"finding": {"type": "string", "maxLength": 24}},
            "required": ["finding"],
            "additionalProperties": False,
        }
        requests = [
            GenerationRequest(
                f"Describe finding {i}.", png(20 + i, 40 * i) if i % 2 else None, "JSON only.", schema
            )
            for i in range(4)
        ]
        endpoint = f"http://127.0.0.1:{port}/v1"
        with closing(http_model(endpoint, served_model=None, concurrency=4, timeout_s=60)) as model:
            outcomes = generate_structured(model, requests, Sampling(max_tokens=48))
            assert model.served_model == "tiny-vlm"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)
        log.close()
    assert all(o.ok for o in outcomes), [(o.error, o.raw) for o in outcomes]
    assert all(set(o.output) == {"finding"} and o.prompt_tokens > 0 and o.output_tokens > 0 for o in outcomes)
