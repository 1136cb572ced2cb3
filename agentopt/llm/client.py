"""The one LLM client every part of agentopt calls: two transports underneath, our policy on top.

Transports: OpenAI-compatible ``api_base`` endpoints (local servers, vLLM, proxies) go through
the lean HTTP path of :mod:`agentopt.llm.openai_fast` (~0.3 ms of CPU per call, no litellm
import at all); every other provider goes through ``litellm.acompletion``. On top of either this adds what a long optimisation run needs: a model
ensemble (weighted choice), a shared budget checked before each call, a record/replay cache,
retries we control (see :mod:`agentopt.llm.retry`), a concurrency cap, per-call records for
the DB, and secret redaction of every error text.

litellm is imported lazily (and in a worker thread, so a running event loop keeps serving
sandboxes while the ~1-3 s import happens): ``import agentopt`` and ``agentopt --help`` must
stay instant and must work without touching litellm at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

from agentopt.errors import LLMError
from agentopt.llm.budget import BudgetLedger
from agentopt.llm.cache import ReplayMiss, RequestCache
from agentopt.llm.openai_fast import FastChatTransport, wire_model
from agentopt.llm.prices import fast_cost, is_priced
from agentopt.llm.redact import install_redacting_filter, redact
from agentopt.llm.retry import FailureInfo, RetryPolicy, classify
from agentopt.llm.types import Completion, Message, Usage
from agentopt.task import LLMSpec, ModelSpec

log = logging.getLogger("agentopt.llm")
install_redacting_filter("agentopt.llm")

#: Key sent to an ``api_base`` server when no ``api_key_env`` is configured: local servers
#: (vLLM, llama.cpp, Ollama) ignore it, but the openai SDK refuses to send a request without one.
NO_KEY = "sk-no-key-required"
_MAX_REASON_CHARS = 300

_litellm: Any = None
_litellm_lock = threading.Lock()


def _import_litellm() -> Any:
    """Import and configure litellm once per process (thread-safe)."""
    global _litellm
    with _litellm_lock:
        if _litellm is None:
            # No internet: without this litellm spends seconds fetching a remote price map.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            import litellm

            litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banners on stdout
            litellm.drop_params = True  # a provider lacking e.g. `seed` should not fail the call
            install_redacting_filter("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")
            _litellm = litellm
    return _litellm


async def _litellm_async() -> Any:
    if _litellm is not None:
        return _litellm
    return await asyncio.to_thread(_import_litellm)


class LLMCallRecord(BaseModel):
    """One call as stored in the run DB (``on_call``); never holds message text or keys."""

    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    cached: bool
    error: str | None
    request_hash: str
    attempt_count: int


def _one_line(text: str) -> str:
    line = redact(" ".join(str(text).split()))
    return line if len(line) <= _MAX_REASON_CHARS else line[: _MAX_REASON_CHARS - 3] + "..."


def _estimate_tokens(messages: Sequence[dict[str, str]]) -> int:
    return sum(len(m.get("content") or "") for m in messages) // 4


class LLMClient:
    """Async client over litellm for the models in an :class:`LLMSpec`."""

    def __init__(
        self,
        spec: LLMSpec,
        *,
        ledger: BudgetLedger | None = None,
        cache: RequestCache | None = None,
        on_call: Callable[[LLMCallRecord], None] | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.spec = spec
        self.ledger = ledger if ledger is not None else BudgetLedger()
        if cache is None and spec.cache is not None:
            cache = RequestCache(spec.cache, replay_only=spec.replay_only)
        self.cache = cache
        self.on_call = on_call
        self.retry = retry if retry is not None else RetryPolicy()
        self._semaphore: asyncio.Semaphore | None = None
        self._semaphore_loop: asyncio.AbstractEventLoop | None = None
        self._occurrences: dict[str, int] = {}  # used only without a cache (for request_hash)
        self._closed = False
        self._fast = FastChatTransport()

    # -- model selection -----------------------------------------------------------------------
    def choose_model(self, rng: random.Random) -> ModelSpec:
        """Pick one ensemble member with probability proportional to ``ModelSpec.weight``."""
        if not self.spec.models:
            raise LLMError("no LLM models configured (llm.models is empty)")
        return rng.choices(self.spec.models, weights=[m.weight for m in self.spec.models], k=1)[0]

    def _resolve_model(self, model: str | ModelSpec | None) -> ModelSpec:
        if isinstance(model, ModelSpec):
            return model
        if model is None:
            if not self.spec.models:
                raise LLMError("no LLM models configured (llm.models is empty)")
            return self.spec.models[0]
        for candidate in self.spec.models:
            if candidate.name == model:
                return candidate
        return ModelSpec(name=model)

    # -- request building ----------------------------------------------------------------------
    def _messages(self, messages: Sequence[Message | dict[str, str]]) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for m in messages:
            msg = m if isinstance(m, Message) else Message.model_validate(m)
            out.append({"role": msg.role, "content": msg.content})
        if not out:
            raise LLMError("LLM request has no messages")
        if self.spec.system_message and out[0]["role"] != "system":
            out.insert(0, {"role": "system", "content": self.spec.system_message})
        return out

    @staticmethod
    def _api_key(model: ModelSpec) -> str | None:
        if model.api_key_env:
            value = os.environ.get(model.api_key_env)
            if not value:
                raise LLMError(
                    f"environment variable {model.api_key_env} (api_key_env of model {model.name}) is not set"
                )
            return value
        return NO_KEY if model.api_base else None  # None: litellm reads the provider's default env var

    @staticmethod
    def _provider_kwargs(litellm: Any, model: ModelSpec) -> dict[str, Any]:
        """Route names like ``local/smollm2`` or ``smollm2`` with an api_base to an OpenAI-compatible server."""
        if not model.api_base:
            return {}
        prefix = model.name.split("/", 1)[0] if "/" in model.name else ""
        if prefix in litellm.provider_list:
            return {}
        return {"custom_llm_provider": "openai"}

    async def _call(
        self,
        model: ModelSpec,
        messages: list[dict[str, str]],
        *,
        timeout_s: float,
        params: dict[str, Any],
        price: bool = True,
    ) -> Completion:
        """One attempt through the model's transport (see the module docstring); ``price=False``
        (the reachability probe, which no ledger sees) skips the price lookup on the fast path."""
        wire = wire_model(model)
        if wire is None:
            return await self._call_litellm(model, messages, timeout_s=timeout_s, params=params)
        body: dict[str, Any] = {"model": wire, "messages": messages, **{k: v for k, v in params.items() if v is not None}}
        started = time.perf_counter()
        answer = await self._fast.chat(model.api_base or "", body, api_key=self._api_key(model), timeout_s=timeout_s)
        latency = time.perf_counter() - started
        usage = Usage(prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens)
        return Completion(
            text=answer.text,
            model=model.name,
            usage=usage,
            cost_usd=(_entry_cost(model, usage) if model.priced else await fast_cost(model.name, usage)) if price else 0.0,
            latency_s=latency,
        )

    async def _call_litellm(
        self, model: ModelSpec, messages: list[dict[str, str]], *, timeout_s: float, params: dict[str, Any]
    ) -> Completion:
        litellm = await _litellm_async()
        kwargs: dict[str, Any] = {
            "model": model.name,
            "messages": messages,
            "timeout": timeout_s,
            "num_retries": 0,  # retries are ours (agentopt.llm.retry)
            "max_retries": 0,  # ... and not the openai SDK's either
            **self._provider_kwargs(litellm, model),
            **{k: v for k, v in params.items() if v is not None},
        }
        api_key = self._api_key(model)
        if api_key is not None:
            kwargs["api_key"] = api_key
        if model.api_base:
            kwargs["api_base"] = model.api_base
        started = time.perf_counter()
        # Backstop in case a provider path ignores `timeout` (some streaming-less adapters do).
        response = await asyncio.wait_for(litellm.acompletion(**kwargs), timeout=timeout_s + 5.0)
        latency = time.perf_counter() - started
        usage = getattr(response, "usage", None)
        choice = response.choices[0] if getattr(response, "choices", None) else None
        text = (getattr(getattr(choice, "message", None), "content", None) or "") if choice else ""
        return Completion(
            text=text,
            model=model.name,
            usage=Usage(
                prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            ),
            cost_usd=self._cost(litellm, response, model),
            latency_s=latency,
        )

    @staticmethod
    def _cost(litellm: Any, response: Any, model: ModelSpec) -> float:
        """The task's own price when the model entry sets one; else litellm's local price map;
        0.0 for models it does not know (local servers): see :meth:`unpriced_models`."""
        if model.priced:
            usage = getattr(response, "usage", None)
            return _entry_cost(
                model,
                Usage(
                    prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                    completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                ),
            )
        try:
            cost = litellm.completion_cost(completion_response=response, model=model.name)
        except Exception:
            return 0.0
        return float(cost) if cost else 0.0

    # -- the call ------------------------------------------------------------------------------
    async def complete(
        self,
        messages: Sequence[Message | dict[str, str]],
        *,
        model: str | ModelSpec | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> Completion:
        """Ask one model; raise :class:`LLMError` (one redacted line) or :class:`BudgetExceeded`.

        Order: budget check, cache lookup (replay), then the provider with retries. Extra
        ``kwargs`` (e.g. ``response_format``) go to litellm and are part of the cache key.
        """
        if self._closed:
            raise LLMError("LLM client is closed")
        spec_model = self._resolve_model(model)
        msgs = self._messages(messages)
        request = {
            "model": spec_model.name,
            "messages": msgs,
            "temperature": self.spec.temperature if temperature is None else temperature,
            "max_tokens": self.spec.max_tokens if max_tokens is None else max_tokens,
            "seed": seed,
            "extra": kwargs or None,
        }
        self.ledger.check_before_call(_estimate_tokens(msgs))
        key = self.cache.next_key(request) if self.cache is not None else self._local_key(request)

        if self.cache is not None:
            started = time.perf_counter()
            hit = self.cache.get(key)
            if hit is not None:
                self.ledger.record(hit)
                self._emit(hit, key, attempts=0, latency=time.perf_counter() - started)
                return hit
            if self.cache.replay_only:
                message = (
                    f"replay-only LLM cache {self.cache.path} has no answer for this request to "
                    f"{spec_model.name} (request hash {key[:12]}); run without replay_only to record it"
                )
                self._emit_error(spec_model.name, key, message, attempts=0, latency=0.0)
                raise ReplayMiss(message)

        params = {
            "temperature": request["temperature"],
            "max_tokens": request["max_tokens"],
            "seed": seed,
            **kwargs,
        }
        completion = await self._with_retries(spec_model, msgs, key, params)
        self.ledger.record(completion)
        if self.cache is not None:
            self.cache.put(key, completion)
        return completion

    def _local_key(self, request: dict[str, Any]) -> str:
        base = RequestCache.key({**request, "occurrence": None})
        n = self._occurrences.get(base, 0)
        self._occurrences[base] = n + 1
        return RequestCache.key({**request, "occurrence": n})

    async def _with_retries(
        self, model: ModelSpec, messages: list[dict[str, str]], key: str, params: dict[str, Any]
    ) -> Completion:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._semaphore_loop is not loop:
            # A semaphore is bound to one event loop; a client reused under a new loop
            # (asyncio.run per CLI step, notebooks) gets a fresh one.
            self._semaphore = asyncio.Semaphore(self.spec.concurrency)
            self._semaphore_loop = loop
        attempts_allowed = self.spec.max_retries + 1
        started = time.perf_counter()
        reason = "no attempt made"
        attempt = 0
        for attempt in range(1, attempts_allowed + 1):
            try:
                async with self._semaphore:
                    completion = await self._call(model, messages, timeout_s=self.spec.timeout_s, params=params)
            except LLMError as exc:  # our own configuration errors (missing key env var)
                self._emit_error(model.name, key, str(exc), attempts=attempt, latency=time.perf_counter() - started)
                raise
            except Exception as exc:  # noqa: BLE001 - every provider error is classified below
                info = classify(exc)
                reason = self._reason(exc, info)
                if not info.retryable or attempt == attempts_allowed:
                    break
                delay = self.retry.backoff(attempt, info.retry_after_s)
                log.warning(
                    "LLM call to %s failed (%s); retry %d/%d in %.2fs",
                    model.name, reason, attempt, attempts_allowed - 1, delay,
                )
                await self.retry.sleep(delay)
                continue
            self._emit(completion, key, attempts=attempt, latency=time.perf_counter() - started)
            return completion
        message = f"LLM call to {model.name} failed after {attempt} attempt(s): {reason}"
        message = _one_line(message)
        log.error("%s", message)
        self._emit_error(model.name, key, message, attempts=attempt, latency=time.perf_counter() - started)
        raise LLMError(message) from None  # `from None`: the SDK exception may carry the key

    @staticmethod
    def _reason(exc: BaseException, info: FailureInfo) -> str:
        if info.kind == "timeout" and isinstance(exc, TimeoutError):
            return "timeout"
        text = str(exc) or type(exc).__name__
        # litellm prefixes "litellm.RateLimitError: RateLimitError: OpenAIException - "; keep the gist.
        text = text.replace("litellm.", "").replace("OpenAIException - ", "")
        return _one_line(f"{info.kind}: {text}")

    # -- records ---------------------------------------------------------------------------------
    def _emit(self, completion: Completion, key: str, *, attempts: int, latency: float) -> None:
        if self.on_call is None:
            return
        self._safe_on_call(
            LLMCallRecord(
                model=completion.model,
                prompt_tokens=completion.usage.prompt_tokens,
                completion_tokens=completion.usage.completion_tokens,
                cost_usd=completion.cost_usd,
                latency_s=latency,
                cached=completion.cached,
                error=None,
                request_hash=key,
                attempt_count=attempts,
            )
        )

    def _emit_error(self, model: str, key: str, error: str, *, attempts: int, latency: float) -> None:
        if self.on_call is None:
            return
        self._safe_on_call(
            LLMCallRecord(
                model=model, prompt_tokens=0, completion_tokens=0, cost_usd=0.0, latency_s=latency,
                cached=False, error=_one_line(error), request_hash=key, attempt_count=attempts,
            )
        )

    def _safe_on_call(self, record: LLMCallRecord) -> None:
        # A failing recorder (e.g. DB locked) must not turn a paid-for answer into an error.
        try:
            assert self.on_call is not None
            self.on_call(record)
        except Exception as exc:  # noqa: BLE001
            log.warning("on_call recorder failed: %s", _one_line(str(exc)))

    # -- health --------------------------------------------------------------------------------
    async def unpriced_models(self) -> list[str]:
        """Models whose calls would cost $0 to the ledger (no price in the task, none in litellm's
        map), so ``max_usd`` cannot limit them: the caller warns before the run starts."""
        unpriced = []
        litellm = None
        for model in self.spec.models:
            if model.priced:
                continue
            if wire_model(model) is not None:  # fast path: litellm's price map, read without litellm
                if not await asyncio.to_thread(is_priced, model.name):
                    unpriced.append(model.name)
                continue
            litellm = litellm or await _litellm_async()
            try:
                info = litellm.get_model_info(model=model.name)
                known = bool(info.get("input_cost_per_token") or info.get("output_cost_per_token"))
            except Exception:  # litellm raises for names it does not know
                known = False
            if not known:
                unpriced.append(model.name)
        return unpriced

    async def check_reachable(self, timeout_s: float = 5.0) -> str | None:
        """None if the first model answers a 1-token request; else a one-line reason (no secrets).

        For an ``api_base`` model a plain TCP connect is tried first, so a dead local server is
        reported in milliseconds without importing litellm. The probe (a few tokens) bypasses the
        cache, the budget and ``on_call``: recording it would make a live run's ledger differ from
        its offline replay (which skips the probe) and so move the point where a budget stops it.
        """
        if not self.spec.models:
            return "no LLM models configured (llm.models is empty)"
        model = self.spec.models[0]
        if model.api_key_env and not os.environ.get(model.api_key_env):
            return f"environment variable {model.api_key_env} (api_key_env of model {model.name}) is not set"
        if model.api_base:
            reason = await _tcp_probe(model.api_base, timeout_s)
            if reason is not None:
                return reason
        if wire_model(model) is None:
            await _litellm_async()  # import first: a one-off process cost, not part of timeout_s
        try:
            await asyncio.wait_for(
                self._call(
                    model,
                    [{"role": "user", "content": "Reply with OK."}],
                    timeout_s=timeout_s,
                    params={"max_tokens": 1, "temperature": 0.0},
                    price=False,
                ),
                timeout=timeout_s,
            )
        except LLMError as exc:
            return _one_line(str(exc))
        except Exception as exc:  # noqa: BLE001
            info = classify(exc)
            return _one_line(f"model {model.name} did not answer: {self._reason(exc, info)}")
        return None

    async def aclose(self) -> None:
        """Stop accepting calls. litellm's pooled HTTP clients are process-wide (shared by every
        LLMClient) and litellm closes them at exit, so they are deliberately left open here.

        litellm's background logging worker, however, lives on the current event loop; left
        running, every `asyncio.run` that used litellm ends with "Task was destroyed but it is
        pending!" on stderr. Stop it here (it restarts on the next loop that makes a call)."""
        self._closed = True
        await self._fast.aclose()
        if "litellm" not in sys.modules:
            return
        try:
            from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER
        except ImportError:  # another litellm version: nothing to stop
            return
        with contextlib.suppress(Exception):
            await GLOBAL_LOGGING_WORKER.stop()


def _entry_cost(model: ModelSpec, usage: Usage) -> float:
    """The price the task's model entry sets (USD per million input / output tokens)."""
    return (
        usage.prompt_tokens * (model.usd_per_million_input_tokens or 0.0)
        + usage.completion_tokens * (model.usd_per_million_output_tokens or 0.0)
    ) / 1e6


async def _tcp_probe(api_base: str, timeout_s: float) -> str | None:
    parsed = urllib.parse.urlsplit(api_base)
    host = parsed.hostname
    if not host:
        return f"api_base {api_base!r} is not a URL (expected e.g. http://127.0.0.1:8000/v1)"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=timeout_s)
    except TimeoutError:
        return f"cannot connect to {redact(api_base)}: no answer within {timeout_s:g}s"
    except OSError as exc:
        return _one_line(f"cannot connect to {api_base}: {exc.strerror or exc}")
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return None
