"""A real, scripted OpenAI-compatible HTTP server for tests.

Tests never monkeypatch litellm/openai; they point the client's ``api_base`` at this server
instead, so the whole HTTP path (serialisation, status codes, headers, timeouts) is exercised.

Behaviour:
- ``POST /v1/chat/completions`` and ``POST /chat/completions`` answer in the OpenAI response
  shape (``id``, ``object``, ``created``, ``model``, ``choices[0].message.content``,
  ``finish_reason``, ``usage`` with token counts estimated as ``ceil(chars / 4)``).
- ``GET /v1/models`` (and ``/models``) lists one model, ``scripted``.
- ``failures`` are injected error responses served, in order, before any scripted reply:
  ``(429, {"Retry-After": "0.1"})`` sends status 429 with that header and an OpenAI-style
  error body. Each failure consumes one request.
- ``replies`` is a list (served in order; when exhausted the LAST reply is repeated forever,
  so a one-element list is a constant model) or a callable ``f(messages) -> str``.
- ``api_key``: when set, any request whose ``Authorization`` is not ``Bearer <api_key>`` gets a
  401 whose message echoes the key it received, like some real providers do — this is what
  lets tests prove that the client redacts keys from error text.
- ``"stream": true`` is refused with 400 (only non-streaming is implemented).
- ``delay_s`` sleeps before answering each chat request (to provoke client timeouts).
- ``port`` picks the port (0, the default: one the OS chooses).
- ``nagle=True`` keeps Nagle's algorithm on, as Python's ``http.server`` does by default: headers
  and body then leave in two segments and the body waits for the client's ACK of the headers
  (the case ``agentopt.llm.openai_fast`` must not pay a delayed ACK for).

``.requests`` holds every received chat JSON body (thread-safe list copy); ``.headers`` holds the
matching request headers (names lower-cased) with the ``authorization`` value replaced by
``"<redacted>"``.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = list[str] | Callable[[list[dict]], str]


def estimate_tokens(text: str) -> int:
    """Rough token count (4 chars per token) so usage numbers are deterministic and non-zero."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


class ScriptedOpenAIServer:
    """Threaded OpenAI-compatible server on 127.0.0.1 with an OS-chosen port."""

    def __init__(
        self,
        replies: Reply,
        *,
        failures: list[tuple[int, dict]] | None = None,
        delay_s: float = 0.0,
        api_key: str | None = None,
        nagle: bool = False,
        port: int = 0,
    ) -> None:
        if isinstance(replies, list) and not replies:
            raise ValueError("replies must be a non-empty list or a callable")
        self._replies = replies
        self._failures = list(failures or [])
        self.delay_s = delay_s
        self.api_key = api_key
        self.nagle = nagle
        self._port = port
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._headers: list[dict[str, str]] = []
        self._reply_index = 0
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> ScriptedOpenAIServer:
        if self._httpd is not None:
            return self
        server = self

        class Handler(_Handler):
            owner = server
            disable_nagle_algorithm = not server.nagle

        httpd = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._stopping.clear()
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping in delay_s
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> ScriptedOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inspection --------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._requests)

    @property
    def headers(self) -> list[dict[str, str]]:
        with self._lock:
            return [dict(h) for h in self._headers]

    # -- scripting (called from handler threads) ---------------------------------------------
    def _record(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict] | None:
        """Store the request; return an injected failure to serve instead, if any is queued."""
        with self._lock:
            self._requests.append(body)
            self._headers.append(headers)
            return self._failures.pop(0) if self._failures else None

    def _next_reply(self, messages: list[dict]) -> str:
        if callable(self._replies):
            return str(self._replies(messages))
        with self._lock:
            i = min(self._reply_index, len(self._replies) - 1)
            self._reply_index += 1
            return self._replies[i]


class _Handler(BaseHTTPRequestHandler):
    owner: ScriptedOpenAIServer
    protocol_version = "HTTP/1.1"  # keep-alive, like real providers
    # Headers and body go out in two writes; with Nagle on, a keep-alive client's delayed ACK
    # stalls every response by ~40 ms. Real servers disable Nagle too.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # keep pytest output clean

    def _send_json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, headers: dict | None = None, code: str | None = None) -> None:
        err_type = "invalid_request_error" if status < 500 else "server_error"
        self._send_json(status, {"error": {"message": message, "type": err_type, "code": code}}, headers)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._send_json(
                200,
                {"object": "list", "data": [{"id": "scripted", "object": "model", "created": 0, "owned_by": "tests"}]},
            )
        else:
            self._error(404, f"no route GET {self.path}")

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._error(404, f"no route POST {self.path}")
            return
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body is not a JSON object")
        except ValueError as exc:
            self._error(400, f"invalid JSON body: {exc}")
            return
        headers = {k.lower(): ("<redacted>" if k.lower() == "authorization" else v) for k, v in self.headers.items()}
        failure = self.owner._record(body, headers)

        if self.owner.delay_s > 0 and self.owner._stopping.wait(self.owner.delay_s):
            return  # server stopping: drop the request
        if failure is not None:
            status, fail_headers = failure
            self._error(status, f"injected failure {status}", fail_headers)
            return
        if self.owner.api_key is not None:
            auth = self.headers.get("Authorization", "")
            given = auth.removeprefix("Bearer ").strip()
            if given != self.owner.api_key:
                self._error(401, f"Incorrect API key provided: {given}. Auth header was '{auth}'.",
                            code="invalid_api_key")
                return
        if body.get("stream"):
            self._error(400, "stream=true is not supported by ScriptedOpenAIServer; send stream=false")
            return
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            self._error(400, "'messages' must be a non-empty list")
            return
        text = self.owner._next_reply(messages)
        prompt_tokens = sum(estimate_tokens(str(m.get("content") or "")) for m in messages if isinstance(m, dict))
        completion_tokens = estimate_tokens(text)
        self._send_json(
            200,
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "scripted"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )
