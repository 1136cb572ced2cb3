"""The fast OpenAI-compatible transport behaves like the litellm route: same request on the wire,
same usage and cost, no litellm import, and connections are reused (keep-alive)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from agentopt.errors import LLMError
from agentopt.llm.client import LLMClient
from agentopt.llm.openai_fast import wire_model
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
