"""LLM layer against a real local OpenAI-compatible server (tests/llm_server.py); no mocks of litellm."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from agentopt.errors import BudgetExceeded, LLMError
from agentopt.llm.budget import BudgetLedger
from agentopt.llm.cache import RequestCache
from agentopt.llm.client import LLMCallRecord, LLMClient
from agentopt.llm.redact import redact
from agentopt.llm.retry import RetryPolicy, parse_retry_after
from agentopt.llm.types import Completion, Usage
from agentopt.task import LLMSpec, ModelSpec

FAKE_KEY = "sk-test-FAKEFAKEFAKE0123456789abcdef"


class SleepRecorder:
    """Injectable sleep: records the requested delays and sleeps only briefly (keeps tests fast)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(min(seconds, 0.01))


def make_client(base_url: str, *, name: str = "openai/test-model", sleep: SleepRecorder | None = None,
                **spec_kw) -> LLMClient:
    spec = LLMSpec(models=[ModelSpec(name=name, api_base=base_url)], **spec_kw)
    retry = RetryPolicy(base_delay_s=0.05, rng=random.Random(0), sleep=sleep or SleepRecorder())
    return LLMClient(spec, retry=retry)


def run(coro):
    return asyncio.run(coro)


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- basic call -----------------------------------------------------------------------------------
def test_complete_returns_text_tokens_and_model(scripted_llm):
    server = scripted_llm(["first answer", "second answer"])
    records: list[LLMCallRecord] = []
    client = make_client(server.base_url)
    client.on_call = records.append

    async def go():
        a = await client.complete([{"role": "user", "content": "hello there, model"}], temperature=0.2, seed=7)
        b = await client.complete([{"role": "user", "content": "again"}])
        await client.aclose()
        return a, b

    a, b = run(go())
    assert (a.text, b.text) == ("first answer", "second answer")
    assert a.model == "openai/test-model" and not a.cached
    assert a.usage.prompt_tokens == 5 and a.usage.completion_tokens == 3  # server: ceil(chars/4)
    assert a.cost_usd == 0.0  # unknown model: no price, no crash
    body = server.requests[0]
    assert body["model"] == "test-model" and body["temperature"] == 0.2 and body["seed"] == 7
    assert body["messages"] == [{"role": "user", "content": "hello there, model"}]
    assert body["max_tokens"] == 4096 and not body.get("stream")
    assert server.headers[0]["authorization"] == "<redacted>"
    assert client.ledger.calls == 2 and client.ledger.tokens == a.usage.total_tokens + b.usage.total_tokens
    assert [r.attempt_count for r in records] == [1, 1] and all(r.error is None for r in records)


def test_name_without_known_provider_goes_to_api_base_as_openai_compatible(scripted_llm):
    server = scripted_llm(["ok"])
    client = make_client(server.base_url, name="local/smollm2", system_message="be brief")
    out = run(client.complete([{"role": "user", "content": "hi"}]))
    assert out.text == "ok" and out.model == "local/smollm2"
    assert server.requests[0]["messages"][0] == {"role": "system", "content": "be brief"}


# -- retries ----------------------------------------------------------------------------------------
def test_retry_on_429_with_retry_after_and_on_500_then_success(scripted_llm):
    server = scripted_llm(["finally"], failures=[(429, {"Retry-After": "0.25"}), (500, {})])
    sleep = SleepRecorder()
    records: list[LLMCallRecord] = []
    client = make_client(server.base_url, sleep=sleep, max_retries=3)
    client.on_call = records.append
    out = run(client.complete([{"role": "user", "content": "x"}]))
    assert out.text == "finally"
    assert len(server.requests) == 3  # litellm/openai SDK retries are off: exactly our 3 attempts
    assert sleep.delays[0] == pytest.approx(0.25)  # Retry-After honoured
    assert 0.025 <= sleep.delays[1] <= 0.1  # 2nd backoff: base 0.05 * 2, equal jitter
    assert records[-1].attempt_count == 3


def test_retry_after_is_capped_and_parses_http_dates():
    policy = RetryPolicy(max_retry_after_s=60.0, rng=random.Random(1))
    assert policy.backoff(1, retry_after_s=3600) == 60.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("garbage") is None and parse_retry_after("2") == 2.0
    delays = [policy.backoff(n) for n in range(1, 10)]
    assert max(delays) <= policy.max_delay_s and delays[0] <= policy.base_delay_s


def test_400_fails_immediately_with_one_line_error(scripted_llm):
    server = scripted_llm(["never"], failures=[(400, {})])
    sleep = SleepRecorder()
    client = make_client(server.base_url, sleep=sleep, max_retries=4)
    with pytest.raises(LLMError) as err:
        run(client.complete([{"role": "user", "content": "x"}]))
    msg = str(err.value)
    assert "\n" not in msg and "400" in msg and "after 1 attempt" in msg
    assert len(server.requests) == 1 and sleep.delays == []


def test_timeouts_are_retried_then_raise(scripted_llm):
    server = scripted_llm(["too slow"], delay_s=10.0)
    client = make_client(server.base_url, timeout_s=0.3, max_retries=1)
    t0 = time.perf_counter()
    with pytest.raises(LLMError) as err:
        run(client.complete([{"role": "user", "content": "x"}]))
    assert "timeout" in str(err.value).lower() and "after 2 attempt" in str(err.value)
    assert len(server.requests) == 2
    assert time.perf_counter() - t0 < 9.0  # waiting for a reply would take 2 x 10 s: not a speed claim


def test_dead_server_exhausts_retries(scripted_llm):
    client = make_client(f"http://127.0.0.1:{dead_port()}/v1", max_retries=2)
    with pytest.raises(LLMError, match="after 3 attempt"):
        run(client.complete([{"role": "user", "content": "x"}]))


# -- budget -----------------------------------------------------------------------------------------
def test_budget_stops_before_the_call(scripted_llm):
    server = scripted_llm(["a"])
    spec = LLMSpec(models=[ModelSpec(name="openai/m", api_base=server.base_url)])
    ledger = BudgetLedger(max_calls=2)
    client = LLMClient(spec, ledger=ledger)

    async def go():
        for _ in range(2):
            await client.complete([{"role": "user", "content": "x"}])
        await client.complete([{"role": "user", "content": "x"}])

    with pytest.raises(BudgetExceeded, match="call budget of 2 reached"):
        run(go())
    assert len(server.requests) == 2  # the third call never left the process


def test_known_model_is_priced_and_usd_budget_stops(scripted_llm):
    server = scripted_llm(["x" * 4000])  # 1000 completion tokens
    spec = LLMSpec(models=[ModelSpec(name="openai/gpt-4o-mini", api_base=server.base_url)])
    client = LLMClient(spec, ledger=BudgetLedger(max_usd=0.0005))
    first = run(client.complete([{"role": "user", "content": "price me"}]))
    assert first.cost_usd > 0 and client.ledger.usd == pytest.approx(first.cost_usd)
    with pytest.raises(BudgetExceeded, match=r"LLM budget of \$0\.0005 reached \(spent \$0\.0006\)"):
        run(client.complete([{"role": "user", "content": "price me"}]))
    assert len(server.requests) == 1


def test_ledger_usd_tokens_snapshot_restore():
    ledger = BudgetLedger(max_usd=1.0, max_tokens=1000)
    ledger.record(Completion(text="x", model="m", usage=Usage(prompt_tokens=300, completion_tokens=200),
                             cost_usd=0.6))
    ledger.check_before_call(estimated_tokens=400)
    with pytest.raises(BudgetExceeded, match="token budget"):
        ledger.check_before_call(estimated_tokens=600)
    ledger.record(Completion(text="y", model="m", cost_usd=0.5))
    with pytest.raises(BudgetExceeded, match=r"budget of \$1\.0000 reached \(spent \$1\.1000\)"):
        ledger.check_before_call()
    fresh = BudgetLedger(max_usd=1.0)
    fresh.restore(ledger.snapshot())
    assert (fresh.usd, fresh.tokens, fresh.calls) == (pytest.approx(1.1), 500, 2)
    with pytest.raises(BudgetExceeded):
        fresh.check_before_call()


# -- cache / replay ---------------------------------------------------------------------------------
def test_cache_replays_offline_in_order(scripted_llm, tmp_path):
    cache_file = tmp_path / "llm_cache.jsonl"
    server = scripted_llm(["one", "two", "three"])
    prompt = [{"role": "user", "content": "sample me"}]

    async def session(base_url: str) -> list[Completion]:
        spec = LLMSpec(models=[ModelSpec(name="openai/m", api_base=base_url)], cache=cache_file)
        client = LLMClient(spec, retry=RetryPolicy(base_delay_s=0.01))
        outs = [await client.complete(prompt), await client.complete(prompt),
                await client.complete([{"role": "user", "content": "other"}])]
        await client.aclose()
        return outs

    first = run(session(server.base_url))
    assert [c.text for c in first] == ["one", "two", "three"] and not any(c.cached for c in first)
    url = server.base_url
    server.stop()
    second = run(session(url))  # server gone: everything must come from the cache
    assert [c.text for c in second] == ["one", "two", "three"] and all(c.cached for c in second)
    assert len(cache_file.read_text().splitlines()) == 3


def test_replay_only_miss_is_a_clear_error(tmp_path):
    spec = LLMSpec(models=[ModelSpec(name="openai/m", api_base=f"http://127.0.0.1:{dead_port()}/v1")],
                   cache=tmp_path / "empty.jsonl", replay_only=True)
    client = LLMClient(spec)
    with pytest.raises(LLMError, match="replay-only LLM cache .* has no answer"):
        run(client.complete([{"role": "user", "content": "x"}]))


def test_cache_tolerates_torn_last_line(tmp_path):
    path = tmp_path / "c.jsonl"
    cache = RequestCache(path)
    k1 = cache.next_key({"model": "m", "messages": [{"role": "user", "content": "q"}]})
    k2 = cache.next_key({"model": "m", "messages": [{"role": "user", "content": "q"}]})
    assert k1 != k2  # occurrence counter
    cache.put(k1, Completion(text="a", model="m"))
    with path.open("a") as fh:
        fh.write('{"key": "dead", "completion": {"te')  # crash mid-write
    reopened = RequestCache(path)
    assert reopened.skipped_lines == 1 and reopened.get(k1).text == "a" and reopened.get(k1).cached
    reopened.put(k2, Completion(text="b", model="m"))
    again = RequestCache(path)
    assert again.get(k2).text == "b" and again.skipped_lines == 1


# -- secrets ----------------------------------------------------------------------------------------
def test_rejected_key_is_redacted_from_error_and_logs(scripted_llm, monkeypatch, caplog):
    monkeypatch.setenv("AGENTOPT_TEST_API_KEY", FAKE_KEY)
    server = scripted_llm(["never"], api_key="the-right-key")  # 401 echoes the key it got
    spec = LLMSpec(models=[ModelSpec(name="openai/m", api_base=server.base_url,
                                     api_key_env="AGENTOPT_TEST_API_KEY")], max_retries=2)
    records: list[LLMCallRecord] = []
    client = LLMClient(spec, on_call=records.append)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(LLMError) as err:
        run(client.complete([{"role": "user", "content": "x"}]))
    msg = str(err.value)
    assert "401" in msg and "Incorrect API key provided: ***" in msg  # the error is kept, the key is not
    assert FAKE_KEY not in msg and "FAKEFAKE" not in msg
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert "Incorrect API key" in caplog.text and FAKE_KEY not in caplog.text
    assert records and FAKE_KEY not in (records[-1].error or "")
    assert len(server.requests) == 1  # 401 is not retried


def test_redact_env_values_and_key_shapes(monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "custom-secret-value-42")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    text = ("custom-secret-value-42 sk-ant-api03-abcdefghijk AIzaSyA1234567890abcdefghijkl "
            "Authorization: Bearer abc.def-ghi api_key=zzz9 false")
    out = redact(text)
    for secret in ("custom-secret-value-42", "sk-ant", "AIzaSy", "abc.def-ghi", "zzz9"):
        assert secret not in out
    assert out.endswith("false") and "Bearer ***" in out


def test_missing_key_env_is_a_one_line_error(scripted_llm, monkeypatch):
    monkeypatch.delenv("AGENTOPT_UNSET_KEY", raising=False)
    server = scripted_llm(["x"])
    spec = LLMSpec(models=[ModelSpec(name="openai/m", api_base=server.base_url, api_key_env="AGENTOPT_UNSET_KEY")])
    with pytest.raises(LLMError, match="AGENTOPT_UNSET_KEY .* is not set"):
        run(LLMClient(spec).complete([{"role": "user", "content": "x"}]))
    assert server.requests == []


# -- ensemble + health ------------------------------------------------------------------------------
def test_choose_model_is_weighted_and_seeded():
    spec = LLMSpec(models=[ModelSpec(name="a", weight=3.0), ModelSpec(name="b", weight=1.0)])
    client = LLMClient(spec)

    def draws(seed: int, n: int) -> list[str]:
        rng = random.Random(seed)
        return [client.choose_model(rng).name for _ in range(n)]

    counts = Counter(draws(5, 4000))
    assert 0.72 < counts["a"] / 4000 < 0.78  # weight 3:1
    assert draws(5, 50) == draws(5, 50) and draws(5, 50) != draws(6, 50)
    with pytest.raises(LLMError, match="no LLM models"):
        LLMClient(LLMSpec()).choose_model(random.Random(0))


def test_check_reachable(scripted_llm):
    live = scripted_llm(["OK"])
    client = make_client(live.base_url)
    assert run(client.check_reachable(timeout_s=5)) is None
    assert len(live.requests) == 1 and live.requests[0]["max_tokens"] == 1
    assert client.ledger.calls == 0  # a preflight, not part of the run's budget
    rejecting = scripted_llm(["OK"], failures=[(404, {})])
    reason = run(make_client(rejecting.base_url).check_reachable(timeout_s=5))
    assert reason is not None and "did not answer" in reason and "404" in reason
    dead = make_client(f"http://127.0.0.1:{dead_port()}/v1")
    t0 = time.perf_counter()
    reason = run(dead.check_reachable(timeout_s=30))
    assert reason is not None and "cannot connect" in reason and "\n" not in reason
    assert time.perf_counter() - t0 < 15.0  # refused at once, not after the 30 s timeout


def test_import_agentopt_llm_does_not_import_litellm():
    code = "import agentopt, agentopt.llm.client, sys; assert 'litellm' not in sys.modules, 'litellm imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_next_key_equals_the_documented_key_formula(tmp_path):
    """next_key builds the canonical JSON once for both of its keys; the keys must stay exactly
    RequestCache.key's, or every recorded cache stops replaying."""
    cache = RequestCache(tmp_path / "c.jsonl")
    requests = [
        {"model": "m", "messages": [{"role": "user", "content": 'é "occurrence":null'}], "temperature": 0.7,
         "max_tokens": 10, "seed": None, "extra": None},
        {"model": "m", "messages": [], "seed": 3, "extra": {"occurrence": None, "z": 1, "a": [1, {"b": 2}]}},
    ]
    for request in requests:
        for n in range(3):
            assert cache.next_key(request) == RequestCache.key({**request, "occurrence": n})
