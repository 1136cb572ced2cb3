"""A lean HTTP path for OpenAI-compatible chat endpoints (vLLM, llama.cpp, proxies, mocks).

Why not litellm (or the openai SDK) for these: measured on this project's 2-core machines,
``litellm.acompletion`` costs ~8 ms of CPU per call and ~3.7 s of CPU to import; the openai SDK
~2-3 ms and httpx alone 1-2 ms. An evolution loop that makes thousands of calls to a local server
spends that CPU on the same cores its evaluations need. Here one request is: build a JSON body,
write it through h11 (the HTTP/1.1 state machine httpx itself uses) on a pooled keep-alive
asyncio connection, parse the JSON answer: ~0.3 ms of CPU.

Only the transport lives here. Retries, the budget, the cache, cost accounting and key redaction
stay in :class:`agentopt.llm.client.LLMClient`, identical for both paths; errors raised here are
shaped so :func:`agentopt.llm.retry.classify` treats them exactly like the SDK's (a status code,
the response headers for ``Retry-After``, ``ConnectionError``/``TimeoutError`` for the rest).

Providers with their own wire format (anthropic/..., gemini/..., ollama/...) keep using litellm:
:func:`wire_model` says which models qualify (see its docstring). ``AGENTOPT_LLM_TRANSPORT=litellm``
sends every call through litellm (an escape hatch, e.g. to compare the two paths).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any

import h11

from agentopt.task import ModelSpec

#: Provider prefixes litellm sends to an ``api_base`` with the OpenAI wire format, stripping the prefix.
_STRIPPED_PREFIXES = ("openai", "hosted_vllm")
#: Prefixes that are not litellm providers but name models on an OpenAI-compatible ``api_base``
#: (agentopt's ``local/<name>`` llama.cpp servers); litellm sends these names unchanged.
_KEPT_PREFIXES = ("local",)
_MAX_ERROR_BODY = 2000
_USER_AGENT = "agentopt"


def wire_model(model: ModelSpec) -> str | None:
    """The ``model`` field to send when ``model`` is served by an OpenAI-compatible endpoint this
    module can call directly; None when the call must go through litellm.

    Qualifies: a model with an ``api_base`` whose name has no provider prefix (``smollm2``), an
    ``openai/`` or ``hosted_vllm/`` prefix (stripped, as litellm does), or agentopt's ``local/``
    prefix (kept). Anything else (``anthropic/...`` with a proxy base, ``ollama/...``) keeps the
    litellm route, which knows those wire formats.
    """
    if not model.api_base or os.environ.get("AGENTOPT_LLM_TRANSPORT", "").lower() == "litellm":
        return None
    if "/" not in model.name:
        return model.name
    prefix, rest = model.name.split("/", 1)
    if prefix in _STRIPPED_PREFIXES:
        return rest
    if prefix in _KEPT_PREFIXES:
        return model.name
    return None


class HTTPStatusError(Exception):
    """A non-2xx answer. ``status_code`` and ``response.headers`` are what ``classify`` reads
    (the same attribute names as the openai SDK's errors), so retry decisions are shared."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str]) -> None:
        super().__init__(f"Error code: {status_code} - {message}")
        self.status_code = status_code
        self.response = _Headers(headers)


@dataclass(frozen=True)
class _Headers:
    headers: dict[str, str]


class RemoteProtocolError(ConnectionError):
    """The server broke HTTP/1.1 or closed the connection mid-answer (retryable, like httpx's)."""


class MalformedReply(Exception):
    """A 2xx answer that is not an OpenAI chat completion (not retried: asking again will not fix it)."""


@dataclass
class ChatAnswer:
    text: str
    prompt_tokens: int
    completion_tokens: int


#: Linux's TCP_QUICKACK (12); None elsewhere, where :func:`_push_ack` does nothing.
_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    h11: h11.Connection
    #: The TCP socket under the stream (None if not TCP), for :func:`_push_ack`.
    sock: Any = None
    #: Partial reads after which an ACK was pushed (for tests and benchmarks: it shows the fix at work).
    acks_pushed: int = 0

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.transport.abort()


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str  # the endpoint's path, e.g. /v1/chat/completions
    host_header: str


def _target(api_base: str, endpoint: str) -> _Target:
    parts = urllib.parse.urlsplit(api_base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"api_base {api_base!r} is not an http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path.rstrip("/") + "/" + endpoint.lstrip("/")
    default_port = (parts.scheme == "https" and port == 443) or (parts.scheme == "http" and port == 80)
    host_header = parts.hostname if default_port else f"{parts.hostname}:{port}"
    return _Target(parts.scheme, parts.hostname, port, path, host_header)


class FastChatTransport:
    """Pooled keep-alive HTTP/1.1 connections per (scheme, host, port), bound to one event loop.

    A client reused under a new event loop (``asyncio.run`` per CLI step) drops the old loop's
    connections: asyncio streams cannot cross loops.
    """

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._targets: dict[str, _Target] = {}
        self._ssl: ssl.SSLContext | None = None

    def _pool(self) -> dict[tuple[str, str, int], list[_Conn]]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._drop_all()
            self._loop = loop
        return self._idle

    def _drop_all(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle = {}

    async def aclose(self) -> None:
        self._drop_all()

    async def _connect(self, target: _Target) -> _Conn:
        ssl_ctx = None
        if target.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            ssl_ctx = self._ssl
        reader, writer = await asyncio.open_connection(target.host, target.port, ssl=ssl_ctx, limit=2**22)
        sock = writer.get_extra_info("socket")  # the TCP socket, also under TLS (asyncio sets TCP_NODELAY)
        if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            sock = None
        return _Conn(reader, writer, h11.Connection(h11.CLIENT), sock)

    async def chat(
        self, api_base: str, body: dict[str, Any], *, api_key: str | None, timeout_s: float
    ) -> ChatAnswer:
        """POST ``body`` to ``{api_base}/chat/completions``; the answer's text and token counts."""
        target = self._targets.get(api_base)
        if target is None:
            target = self._targets[api_base] = _target(api_base, "chat/completions")
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = [
            ("Host", target.host_header),
            ("User-Agent", _USER_AGENT),
            ("Accept", "application/json"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
        ]
        if api_key:
            headers.append(("Authorization", f"Bearer {api_key}"))
        async with asyncio.timeout(timeout_s):
            status, resp_headers, data = await self._request(target, headers, payload)
        if status >= 400:
            raise HTTPStatusError(status, _error_message(data), resp_headers)
        return _parse_chat(data)

    async def _request(
        self, target: _Target, headers: list[tuple[str, str]], payload: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        pool = self._pool()
        key = (target.scheme, target.host, target.port)
        idle = pool.setdefault(key, [])
        while idle:
            conn = idle.pop()
            if conn.reader.at_eof() or conn.writer.is_closing():
                conn.close()
                continue
            try:
                return await self._exchange(conn, target, headers, payload, key)
            except _StaleConnection:
                continue  # the server closed an idle keep-alive connection: use a fresh one
        conn = await self._connect(target)
        try:
            return await self._exchange(conn, target, headers, payload, key)
        except _StaleConnection:
            raise RemoteProtocolError("server closed the connection without answering") from None

    async def _exchange(
        self, conn: _Conn, target: _Target, headers: list[tuple[str, str]], payload: bytes, key: tuple[str, str, int]
    ) -> tuple[int, dict[str, str], bytes]:
        ok = False
        got_bytes = False
        try:
            h = conn.h11
            conn.writer.write(
                h.send(h11.Request(method="POST", target=target.path, headers=headers))
                + h.send(h11.Data(data=payload))
                + h.send(h11.EndOfMessage())
            )
            await conn.writer.drain()
            status = 0
            resp_headers: dict[str, str] = {}
            chunks: list[bytes] = []
            while True:
                event = h.next_event()
                if event is h11.NEED_DATA:
                    if got_bytes:
                        _push_ack(conn)  # part of the answer is here and more is due: ACK it now
                    data = await conn.reader.read(65536)
                    if data:
                        got_bytes = True
                    elif not got_bytes:
                        raise _StaleConnection
                    h.receive_data(data)
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                    resp_headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise RemoteProtocolError("server closed the connection mid-answer")
            if h.our_state is h11.DONE and h.their_state is h11.DONE:
                h.start_next_cycle()
                ok = True
            return status, resp_headers, b"".join(chunks)
        except h11.RemoteProtocolError as err:
            raise RemoteProtocolError(f"bad HTTP answer: {err}") from None
        except (ConnectionResetError, BrokenPipeError) as err:
            if not got_bytes:
                raise _StaleConnection from None
            raise RemoteProtocolError(f"connection lost: {err}") from None
        finally:
            if ok:
                self._pool().setdefault(key, []).append(conn)
            else:
                conn.close()


def _push_ack(conn: _Conn) -> None:
    """Make the kernel ACK what we have received now, not when the delayed-ACK timer fires.

    Why: many servers (Python's ``http.server``, naive proxies, some framework dev servers)
    write the status line and headers in one ``send`` and the body in another, with Nagle's
    algorithm on. Nagle holds the body until the headers are ACKed, and on a keep-alive
    connection Linux has put our side in delayed-ACK ("pingpong") mode because we answer each
    response with a request: the ACK waits for the 40 ms timer. Every call then costs >= 40 ms
    however fast the model is. Setting ``TCP_QUICKACK`` after a partial read sends the pending
    ACK at once (the kernel resets the flag by itself, so it is set again on every partial read).
    One syscall per partial read; complete answers that arrive in one piece never pay it.
    """
    if conn.sock is None or _TCP_QUICKACK is None:
        return
    try:
        conn.sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
    except OSError:
        conn.sock = None  # not a TCP socket after all: stop trying
    else:
        conn.acks_pushed += 1


class _StaleConnection(Exception):
    """Zero bytes came back: the server had closed the (idle) connection before our request."""


def _error_message(data: bytes) -> str:
    text = data[:_MAX_ERROR_BODY].decode("utf-8", errors="replace")
    try:
        parsed = json.loads(data)
    except ValueError:
        return text.strip() or "no error message"
    if isinstance(parsed, dict):
        err = parsed.get("error", parsed)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:_MAX_ERROR_BODY]
        if isinstance(err, str):
            return err[:_MAX_ERROR_BODY]
    return text.strip() or "no error message"


def _parse_chat(data: bytes) -> ChatAnswer:
    try:
        parsed = json.loads(data)
        choices = parsed.get("choices") or []
        message = (choices[0] or {}).get("message") or {} if choices else {}
        text = message.get("content") or ""
        usage = parsed.get("usage") or {}
        return ChatAnswer(
            text=str(text),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )
    except (ValueError, AttributeError, TypeError, IndexError) as err:
        raise MalformedReply(f"not an OpenAI chat completion ({type(err).__name__})") from None
