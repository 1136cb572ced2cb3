"""Ranking feedback: backward over k outputs, ZO-RankSGD against random search at equal
queries, the terminal ranker fed through real stdin, and the LLM judge against the local server."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from agentopt.optim import LLMJudgeRanker, OptimizerError, RankingError, RankSGD, RankText, rank_by_score
from agentopt.optim.rank_sgd import rank_weights
from agentopt.optim.rank_text import borda
from agentopt.task import LLMSpec
from agentopt.trace import InvalidValue, Param, Ranking, backward, trace


@trace
def shout(text: str, level: int) -> str:
    return text + "!" * level


def test_backward_ranking_gives_each_output_its_position() -> None:
    level = Param(1, bounds=(0, 5), name="level")
    outs = [shout("hi", level) for _ in range(3)]
    props = backward(outs, Ranking(order=(2, 0, 1), text="more is better"))
    ranks = [p.feedback.rank for p in props]
    assert [r.position for r in ranks] == [1, 2, 0] and {r.of for r in ranks} == {3}
    assert [r.candidate for r in ranks] == [0, 1, 2] and len({r.group for r in ranks}) == 1
    assert "ranked 1 of 3" in props[2].feedback.render() and "more is better" in props[2].feedback.render()
    assert len(level.feedback) == 3
    again = backward(outs, [0, 1, 2], accumulate=False)
    assert again[0].feedback.rank.group != ranks[0].group  # every backward call is its own ranking


@pytest.mark.parametrize(("outputs", "feedback", "match"), [
    (3, [0, 1], "orders 2 candidates but 3 outputs"),
    (2, [0, 0], "exactly once"),
    (2, None, "needs a ranking"),
    (2, "good", "list of candidate indices"),
    (1, Ranking(order=(1, 0)), "orders several outputs"),
])
def test_bad_rankings_are_one_line_errors(outputs, feedback, match) -> None:
    level = Param(1, bounds=(0, 5))
    outs = [shout("a", level) for _ in range(outputs)]
    with pytest.raises(InvalidValue, match=match):
        backward(outs if outputs > 1 else outs[0], feedback)


def test_rank_weights_are_the_all_pairs_estimator() -> None:
    w = rank_weights(Ranking(order=(2, 0, 1)))
    # candidate 2 beats both (+2), 0 beats 1 and loses to 2 (0), 1 loses both (-2); 3 pairs
    assert w.tolist() == pytest.approx([0.0, -2 / 3, 2 / 3])


def _quadratic_runs(seed: int, queries: int, k: int = 4, d: int = 10) -> tuple[float, float]:
    """Distance to a hidden target after ``queries`` rankings: RankSGD vs random search that
    ranks the incumbent with k-1 fresh uniform points per query (same oracle, same k)."""
    target = np.random.default_rng(seed + 100).random(d)
    params = [Param(0.5, bounds=(0.0, 1.0), name=f"x{i}") for i in range(d)]
    opt = RankSGD(params, k=k, seed=seed)
    oracle = rank_by_score(lambda v: -sum((v[f"x{i}"] - target[i]) ** 2 for i in range(d)))
    for _ in range(queries):
        opt.tell(oracle(opt.candidates()))
    ours = sum((opt.value()[f"x{i}"] - target[i]) ** 2 for i in range(d))
    rng = np.random.default_rng(seed)
    best = np.full(d, 0.5)
    for _ in range(queries):
        pool = [best] + [rng.random(d) for _ in range(k - 1)]
        best = pool[rank_by_score(lambda x: -((x - target) ** 2).sum())(pool).order[0]]
    return ours, float(((best - target) ** 2).sum())


def test_rank_sgd_converges_and_beats_random_search_at_equal_queries() -> None:
    for seed in range(3):
        ours, random_search = _quadratic_runs(seed, queries=80)
        assert ours < 0.02, (seed, ours)
        assert ours < 0.2 * random_search, (seed, ours, random_search)


def test_rank_sgd_through_backward_and_step_with_log_and_integer_params() -> None:
    lr = Param(0.1, bounds=(1e-4, 1.0), log=True, name="lr")
    width = Param(2, bounds=(1, 64), name="width")

    @trace
    def model(lr: float, width: int) -> float:  # best at lr = 1e-2, width = 32
        return -((np.log10(lr) + 2) ** 2) - ((width - 32) / 16) ** 2

    opt = RankSGD([lr, width], k=4, lr=0.15, seed=1)
    for _ in range(60):
        outs = [model(lr, width) for _ in opt.each_candidate()]
        backward(outs, rank_by_score(float)(outs))
        result = opt.step()
        assert result.applied == {"lr": lr.value, "width": width.value}
    assert isinstance(width.value, int)
    assert abs(np.log10(lr.value) + 2) < 0.3 and abs(width.value - 32) <= 6
    assert opt.step().skipped.startswith("no ranking")


def test_rank_sgd_rejects_what_it_cannot_optimize() -> None:
    with pytest.raises(OptimizerError, match="needs bounds"):
        RankSGD([Param(1.0, name="free")])
    with pytest.raises(OptimizerError, match="at least one trainable number"):
        RankSGD([Param("text")])
    opt = RankSGD([Param(1.0, bounds=(0, 2))], k=3)
    with pytest.raises(OptimizerError, match="orders 2 candidates but RankSGD proposed 3"):
        opt.tell([1, 0])


_TERMINAL = (
    "from agentopt.optim import TerminalRanker\n"
    "r = TerminalRanker().rank(['short', 'longer\\x1b]0;pwned\\x07 one', 'x'], question='Pick')\n"
    "print(list(r.order))\n"
)


def test_terminal_ranker_reads_stdin_retries_and_strips_escapes() -> None:
    proc = subprocess.run([sys.executable, "-c", _TERMINAL], input="Z\nB A\n", capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[1, 0, 2]"  # C, the one left out, is last
    assert "unknown candidate 'Z'" in proc.stderr and "longer" in proc.stderr
    assert "\x1b]0;" not in proc.stderr and "\x07" not in proc.stderr
    ended = subprocess.run([sys.executable, "-c", _TERMINAL], input="", capture_output=True, text=True, timeout=60)
    assert ended.returncode == 1 and "no ranking given (end of input)" in ended.stderr


def _judge_by_length(messages: list[dict]) -> str:
    """A judge that prefers longer candidates: reads the labelled fences from the prompt."""
    prompt = messages[1]["content"]
    cands = dict(re.findall(r"#Candidate (\w+)\n`{3,}\n(.*?)\n`{3,}", prompt, re.DOTALL))
    order = sorted(cands, key=lambda name: -len(cands[name]))
    return json.dumps({"reason": "longer is more complete", "ranking": order})


def test_llm_judge_ranks_through_the_local_server_and_undoes_its_shuffle(scripted_llm) -> None:
    server = scripted_llm(_judge_by_length)
    spec = LLMSpec(models=[{"name": "openai/scripted", "api_base": server.base_url}], max_retries=0)
    judge = LLMJudgeRanker(spec, "Which answer is most complete?", seed=3)
    cands = ["a", "aaaa", "aa", "aaa"]
    for _ in range(3):  # three different shuffles, same answer
        ranking = judge.rank(cands)
        assert ranking.order == (1, 3, 2, 0) and ranking.text == "longer is more complete"
    assert len(server.requests) == 3
    assert "Which answer is most complete?" in server.requests[0]["messages"][1]["content"]


def test_llm_judge_feeds_back_a_bad_reply_then_gives_up(scripted_llm) -> None:
    server = scripted_llm(["I like B", json.dumps({"ranking": ["B", "A"]})])
    spec = LLMSpec(models=[{"name": "openai/scripted", "api_base": server.base_url}], max_retries=0)
    judge = LLMJudgeRanker(spec, "best?", shuffle=False)
    assert judge.rank(["x", "y"]).order == (1, 0)
    assert "previous reply was invalid" in server.requests[1]["messages"][-1]["content"]
    bad = scripted_llm(['{"ranking": ["A", "A"]}'])
    judge = LLMJudgeRanker(LLMSpec(models=[{"name": "openai/scripted", "api_base": bad.base_url}], max_retries=0),
                           "best?")
    with pytest.raises(RankingError, match="no valid ranking in 2 attempts: a candidate was named twice"):
        judge.rank(["x", "y"])


def test_borda_aggregates_several_rankings() -> None:
    assert borda([Ranking(order=(1, 0, 2)), Ranking(order=(1, 2, 0)), Ranking(order=(0, 1, 2))]) == [1, 0, 2]


def test_rank_text_drafts_variants_learns_preferences_and_keeps_the_winner(scripted_llm) -> None:
    server = scripted_llm([
        json.dumps({"variants": [{"style": "terse"}, {"style": "very detailed answer"}, {"style": 3}]}),
        json.dumps({"variants": [{"style": "very detailed answer, with examples"}, {"style": "short"},
                                 {"style": "medium length"}]}),
    ])
    style = Param("plain", name="style")
    opt = RankText({"style": style}, llm=LLMSpec(models=[{"name": "openai/scripted", "api_base": server.base_url}],
                                                   max_retries=0), k=4)

    @trace
    def answer(style: str) -> str:
        return f"[{style}]"

    prefer_long = rank_by_score(len)
    outs = [answer(style) for _ in opt.each_candidate()]
    assert [o.value for o in outs] == ["[plain]", "[terse]", "[very detailed answer]"]  # 3 is not text: dropped
    assert style.value == "plain"  # restored after the round
    backward(outs, Ranking(order=prefer_long(outs).order, text="longer explains more"))
    result = opt.step()
    assert result.applied == {"style": "very detailed answer"} and style.value == "very detailed answer"
    outs = [answer(style) for _ in opt.each_candidate()]
    prompt = server.requests[1]["messages"][1]["content"]
    assert "preferred" in prompt and "very detailed answer" in prompt and "longer explains more" in prompt
    assert "expects text" in prompt  # the rejected variant was noted
    assert len(outs) == 4 and outs[0].value == "[very detailed answer]"
    backward(outs, [0, 2, 3, 1])  # the current value wins: nothing changes
    assert opt.step().applied == {} and style.value == "very detailed answer"
