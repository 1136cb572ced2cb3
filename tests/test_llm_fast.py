"""The fast OpenAI-compatible transport behaves like the litellm route: same request on the wire,
same usage and cost, no litellm import, and connections are reused (keep-alive)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import h11
import pytest

from agentopt.errors import LLMError
from agentopt.llm.client import LLMClient
from agentopt.llm.openai_fast import FastChatTransport, wire_model
from agentopt.task import LLMSpec, ModelSpec

ROOT = Path(__file__).resolve().parents[1]


def test_wire_model_routes_only_openai_compatible_names(monkeypatch):
    base = "http://127.0.0.1:9/v1"
    assert wire_model(ModelSpec(name="openai/gpt-4o-mini", api_base=base)) == "gpt-4o-mini"
    assert wire_model(ModelSpec(name="hosted_vllm/qwen", api_base=base)) == "qwen"
    assert wire_model(ModelSpec(name="local/smollm2", api_base=base)) == "local/smollm2"
    assert wire_model(ModelSpec(name="smollm2", api_base=base)) == "smollm2"
    assert wire_model(ModelSpec(name="anthropic/claude-3-5-haiku", api_base=base)) is None  # other wire format
    assert wire_model(ModelSpec(name="openai/gpt-4o-mini")) is None  # no api_base: the provider's own route
    monkeypatch.setenv("AGENTOPT_LLM_TRANSPORT", "litellm")
    assert wire_model(ModelSpec(name="openai/gpt-4o-mini", api_base=base)) is None


def _ask(base_url: str, name: str) -> tuple:
    client = LLMClient(LLMSpec(models=[ModelSpec(name=name, api_base=base_url)], temperature=0.3, max_tokens=77))

    async def go():
        try:
            return await client.complete([{"role": "user", "content": "price me"}], seed=3)
        finally:
            await client.aclose()

    out = asyncio.run(go())
    return out.text, out.usage, out.cost_usd, out.model


def test_fast_path_matches_litellm_route(scripted_llm, monkeypatch):
    server = scripted_llm(["x" * 400])
    fast = _ask(server.base_url, "openai/gpt-4o-mini")
    monkeypatch.setenv("AGENTOPT_LLM_TRANSPORT", "litellm")
    slow = _ask(server.base_url, "openai/gpt-4o-mini")
    assert fast == slow and fast[2] > 0  # same text, usage, model and litellm's own price
    keys = ("model", "messages", "temperature", "max_tokens", "seed")
    first, second = server.requests
    assert {k: first.get(k) for k in keys} == {k: second.get(k) for k in keys}
    assert first["model"] == "gpt-4o-mini" and first["max_tokens"] == 77 and first["seed"] == 3


def test_fast_path_reuses_connections_and_never_imports_litellm(scripted_llm):
    server = scripted_llm(["ok"])
    code = (
        "import asyncio, sys\n"
        "from agentopt.llm.client import LLMClient\n"
        "from agentopt.task import LLMSpec, ModelSpec\n"
        f"c = LLMClient(LLMSpec(models=[ModelSpec(name='openai/m', api_base={server.base_url!r})]))\n"
        "async def go():\n"
        "    assert await c.check_reachable(timeout_s=10) is None\n"
        "    for _ in range(5):\n"
        "        await c.complete([{'role': 'user', 'content': 'x'}])\n"
        "    pool = c._fast._idle\n"
        "    await c.aclose()\n"
        "    return sum(len(v) for v in pool.values())\n"
        "idle = asyncio.run(go())\n"
        "assert 'litellm' not in sys.modules, 'litellm imported'\n"
        "print(idle)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"  # six sequential requests, one kept-alive connection
    assert len(server.requests) == 6


def test_fast_path_retries_5xx_then_fails_in_one_line(scripted_llm):
    server = scripted_llm(["ok"], failures=[(503, {}), (503, {})])
    client = LLMClient(LLMSpec(models=[ModelSpec(name="openai/m", api_base=server.base_url)], max_retries=1))
    with pytest.raises(LLMError) as err:
        asyncio.run(client.complete([{"role": "user", "content": "x"}]))
    assert "503" in str(err.value) and "after 2 attempt" in str(err.value) and "\n" not in str(err.value)


class _SplitHandler(BaseHTTPRequestHandler):
    """Answers like Python's http.server with Nagle on: headers and body in two writes, and the
    body held until the test releases it, so the client is caught between the two."""

    protocol_version = "HTTP/1.1"
    release: threading.Semaphore

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"choices": [{"message": {"content": "ok"}}], "usage": {}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()  # first segment
        if self.release.acquire(timeout=30):
            self.wfile.write(body)  # second segment: Nagle holds it until the headers are ACKed


def test_split_answers_get_their_ack_at_once_on_keepalive():
    """A server that writes headers and body separately (with Nagle) must not cost a delayed ACK
    (~40 ms) per call: after each partial read the client leaves delayed-ACK mode, which the kernel
    reports through getsockopt(TCP_QUICKACK). Checked on the kernel's state, not on a clock."""
    if not hasattr(socket, "TCP_QUICKACK"):
        pytest.skip("TCP_QUICKACK is Linux-only")
    handler = type("H", (_SplitHandler,), {"release": threading.Semaphore(0)})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    conns: list = []

    class Watched(FastChatTransport):
        async def _connect(self, target):
            conn = await super()._connect(target)
            conns.append(conn)
            return conn

    async def go() -> list[int]:
        transport = Watched()
        quick = []
        for _ in range(4):  # the first exchange is not yet keep-alive "pingpong"; the later ones are
            call = asyncio.create_task(
                transport.chat(base, {"model": "m", "messages": []}, api_key=None, timeout_s=30)
            )
            for _ in range(3000):  # wait (hang guard only) until the client holds the headers alone
                await asyncio.sleep(0.01)
                if conns and conns[0].h11.their_state is h11.SEND_BODY:
                    break
            sock = conns[0].writer.get_extra_info("socket")
            quick.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK))
            handler.release.release()
            assert (await call).text == "ok"
        await transport.aclose()
        return quick

    try:
        quick = asyncio.run(go())
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert len(conns) == 1  # one keep-alive connection throughout
    assert quick == [1, 1, 1, 1]  # never left waiting in delayed-ACK mode with a body due
    assert conns[0].acks_pushed == 4
