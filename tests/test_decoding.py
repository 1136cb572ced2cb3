"""Iterative agent decoding and best-of-N against the real local scripted server, on a toy
text Param whose verifier counts target words: controlled inputs, exact expectations."""

from __future__ import annotations

import hashlib
import json
import re

from agentopt.optim import BestOfN, IterativeDecoding
from agentopt.task import LLMSpec
from agentopt.trace import Param

TARGET = ["alpha", "beta", "gamma", "delta", "omega"]
POOL = [*TARGET, "noise", "filler", "static"]


def current_value(user: str) -> str:
    match = re.search(r"## text\n(`{3,})\n(.*?)\n\1", user, re.DOTALL)
    assert match, user
    return match.group(2)


def add_a_word(messages: list[dict]) -> str:
    """Append one pool word (chosen by a hash of the prompt) to the value shown as current best."""
    user = messages[-1]["content"]
    value = current_value(user)
    absent = [w for w in POOL if w not in value.split()]
    word = absent[int(hashlib.sha256(user.encode()).hexdigest(), 16) % len(absent)]
    return json.dumps({"reasoning": "add a word", "suggestion": {"text": f"{value} {word}"}})


def verifier(param: Param):
    def verify() -> tuple[float, str]:
        words = param.value.split()
        missing = [w for w in TARGET if w not in words]
        return len(TARGET) - len(missing), f"missing: {' '.join(missing)}"
    return verify


def spec(server) -> LLMSpec:
    return LLMSpec(models=[{"name": "openai/scripted", "api_base": server.base_url}], max_retries=0)


def test_iterative_decoding_refines_from_the_verified_best_with_reward_differences(scripted_llm) -> None:
    server = scripted_llm(add_a_word)
    text = Param("start", name="text")
    opt = IterativeDecoding({"text": text}, verify=verifier(text), llm=spec(server), n=3)
    first = opt.step()
    assert opt.initial.score == 0 and opt.calls == 3 and opt.verifications == 4
    best1 = opt.best
    assert best1.score == 1 and first.applied == {"text": best1.values["text"]} == {"text": text.value}
    opt.step()
    prompts = [m[-1]["content"] for m in opt.last_prompts]
    assert all(current_value(p) == best1.values["text"] for p in prompts)  # refined from the best
    diff = prompts[0].split("#What made the difference in the previous step\n")[1]
    step1_scores = sorted(s.score for s in opt.history[0])
    assert f"Best candidate: score {step1_scores[-1]:.4g} ({step1_scores[-1] - 0:+.4g} against its parent)" in diff
    assert f"Worst candidate: score {step1_scores[0]:.4g}" in diff
    assert "candidate 1 of 3" in prompts[0] and "candidate 3 of 3" in prompts[2]
    for _ in range(4):
        opt.step()
    scores = [s for _, s in opt.curve]
    assert [c for c, _ in opt.curve] == [3, 6, 9, 12, 15, 18]
    assert scores == sorted(scores)  # the best so far never gets worse
    assert opt.best.score >= 4


def test_best_of_n_always_samples_from_the_start_and_loses_at_equal_calls(scripted_llm) -> None:
    server = scripted_llm(add_a_word)
    text = Param("start", name="text")
    bon = BestOfN({"text": text}, verify=verifier(text), llm=spec(server), n=3)
    for _ in range(6):
        bon.step()
        assert all(current_value(m[-1]["content"]) == "start" for m in bon.last_prompts)
        assert all("What made the difference" not in m[-1]["content"] for m in bon.last_prompts)
    assert bon.calls == 18 and bon.best.score == 1  # one word from the start: at most one target
    other = Param("start", name="text")
    iad = IterativeDecoding({"text": other}, verify=verifier(other), llm=spec(server), n=3)
    for _ in range(6):
        iad.step()
    assert iad.calls == bon.calls and iad.best.score > bon.best.score


def test_malformed_replies_become_notes_and_minimize_works(scripted_llm) -> None:
    replies = ["not json", json.dumps({"suggestion": {"text": 5}}),
               json.dumps({"suggestion": {"text": "short"}}), json.dumps({"suggestion": {"text": "tiny"}})]
    server = scripted_llm(replies)
    text = Param("a rather long value", name="text")
    opt = IterativeDecoding({"text": text}, verify=lambda: len(text.value), llm=spec(server), n=2,
                            direction="minimize")
    first = opt.step()
    assert first.error == "no valid candidate this step" and text.value == "a rather long value"
    opt.step()
    notes = opt.last_prompts[0][-1]["content"]
    assert "no JSON object" in notes and "expects text" in notes
    assert text.value == "tiny" and opt.best.score == 4


def test_b4_selection_picks_the_agreeing_candidate_over_the_top_scored_one(scripted_llm) -> None:
    from tests.test_select import TRAP  # rows: 0-1 correct, 2-4 a buggy family passing wrong tests

    labels = [f"r{i}" for i in range(len(TRAP)) if i != 7]
    results = {}
    for selection in ("score", "b4"):
        server = scripted_llm([json.dumps({"suggestion": {"text": label}}) for label in labels])
        text = Param("r7", name="text")

        def verify(text: Param = text) -> dict:
            row = TRAP[int(text.value[1:])]
            return {"score": sum(row), "passes": row}

        opt = IterativeDecoding({"text": text}, verify=verify, llm=spec(server), n=len(labels), selection=selection)
        opt.step()
        results[selection] = text.value
    assert results["score"] in {"r2", "r3", "r4"}  # 5 passes, the shared bug
    assert results["b4"] in {"r0", "r1"}           # 4 passes, but the tests they fail are wrong
