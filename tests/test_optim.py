"""Optimizer tests, each LLM optimizer driven through the real local scripted OpenAI server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agentopt.optim import (
    OPRO,
    Candidate,
    MalformedReply,
    NumericOptimizer,
    OptimizerError,
    OptoPrime,
    ReflectivePareto,
    parse_suggestion,
)
from agentopt.optim.command import run_optimize_cli
from agentopt.optim.config import load_config
from agentopt.optim.runner import optimize
from agentopt.task import LLMSpec
from agentopt.trace import Module, Param, backward, node, trace

REPO = Path(__file__).resolve().parents[1]


def spec_for(server) -> LLMSpec:
    return LLMSpec(models=[{"name": "openai/scripted", "api_base": server.base_url}], max_retries=0, timeout_s=30)


def reply(suggestion: dict, reasoning: str = "because") -> str:
    return json.dumps({"reasoning": reasoning, "suggestion": suggestion})


def user_prompt(request: dict) -> str:
    return request["messages"][-1]["content"]


@trace
def render_answer(style: str, question: str) -> str:
    return f"[{style}] {question}"


def test_parse_suggestion_variants() -> None:
    assert parse_suggestion('{"reasoning": "r", "suggestion": {"a": 1}}') == ({"a": 1}, "r")
    fenced = 'Sure!\n```json\n{"suggestion": {"a": "x"}}\n```\nDone.'
    assert parse_suggestion(fenced)[0] == {"a": "x"}
    assert parse_suggestion('I think {"suggestions": {"b": 2}} works')[0] == {"b": 2}
    with pytest.raises(MalformedReply, match="no JSON object"):
        parse_suggestion("no json here")
    with pytest.raises(MalformedReply, match="no 'suggestion' key"):
        parse_suggestion('{"answer": 3}')
    with pytest.raises(MalformedReply, match="must be an object"):
        parse_suggestion('{"suggestion": [1, 2]}')
    with pytest.raises(MalformedReply, match="empty"):
        parse_suggestion("  ")


def test_optoprime_applies_suggestion_and_shows_graph(scripted_llm) -> None:
    server = scripted_llm([reply({"style": "terse"})])
    style = Param("verbose", name="style", description="answer style")
    out = render_answer(style, node("2+2?", name="question"))
    backward(out, {"score": 0.0, "text": "too long"})
    opt = OptoPrime([style], llm=spec_for(server))
    result = opt.step()
    assert result.applied == {"style": "terse"} and style.value == "terse"
    assert style.feedback == []  # consumed
    prompt = user_prompt(server.requests[0])
    assert "render_answer0 = render_answer(style=style, question=question)" in prompt
    assert "too long" in prompt and "answer style" in prompt and "'verbose'" in prompt
    # No feedback pending: the next step makes no LLM call.
    assert opt.step().skipped and len(server.requests) == 1


def test_invalid_suggestions_become_feedback_not_crash(scripted_llm) -> None:
    bad = reply({"style": 5, "lr": 7.0, "fix": "def fix(x) return x", "nope": 1})
    good = reply({"lr": 0.5})
    server = scripted_llm([bad, good])
    style = Param("plain", name="style")
    lr = Param(0.1, bounds=(0.0, 1.0), name="lr")

    @trace(trainable=True)
    def fix(x):
        return x

    @trace
    def use(s, rate, value):
        return f"{s}:{rate}:{fix(value)}"

    named = {"style": style, "lr": lr, "fix": fix.code}
    opt = OptoPrime(named, llm=spec_for(server))
    backward(use(style, lr, node(1)), "wrong")
    first = opt.step()
    assert first.applied == {}
    assert set(first.rejected) == {"style", "lr", "fix", "nope"}
    assert "expects text" in first.rejected["style"]
    assert "outside bounds" in first.rejected["lr"]
    assert "does not compile" in first.rejected["fix"]
    assert style.value == "plain" and lr.value == 0.1 and fix.code.value.startswith("def fix(x):")
    backward(use(style, lr, node(2)), "still wrong")
    second = opt.step()
    assert second.applied == {"lr": 0.5}
    assert "was rejected" in user_prompt(server.requests[1]) and "outside bounds" in user_prompt(server.requests[1])


def test_malformed_reply_is_feedback_and_memory_is_kept(scripted_llm) -> None:
    server = scripted_llm(["I would change the style.", '{"answer": 1}', reply({"style": "b"}), reply({"style": "c"})])
    style = Param("a", name="style")
    opt = OptoPrime([style], llm=spec_for(server))
    for expected_error in ("no JSON object", "no 'suggestion' key"):
        backward(render_answer(style, "q"), 0.0)
        result = opt.step()
        assert result.error and expected_error in result.error and style.value == "a"
    backward(render_answer(style, "q"), 0.0)
    assert opt.step().applied == {"style": "b"}
    assert "no 'suggestion' key" in user_prompt(server.requests[2])
    backward(render_answer(style, "q"), {"score": 0.25, "text": "closer"})
    opt.step()
    memory = user_prompt(server.requests[3])
    assert "#Memory" in memory and 'changed {"style": "b"}' in memory and "mean score 0.25" in memory


def test_opro_shows_sorted_history_and_proposes(scripted_llm) -> None:
    server = scripted_llm([reply({"style": "v2"}), reply({"style": "v3"}), reply({"style": "v4"})])
    style = Param("v1", name="style")
    opt = OPRO([style], llm=spec_for(server))
    for score in (0.5, 0.9, 0.1):
        backward(render_answer(style, "q"), {"score": score, "text": f"got {score}"})
        opt.step()
    assert style.value == "v4"
    prompt = user_prompt(server.requests[-1])
    order = [m.group(1) for m in re.finditer(r"value:\n(v\d)\nscore", prompt)]
    assert order == ["v3", "v1", "v2"]  # worst (0.1) first, best (0.9) last
    assert "got 0.1" in prompt
    assert opt.apply_best().values == {"style": "v2"} and style.value == "v2"


def test_reflective_pareto_front_and_improvement(scripted_llm) -> None:
    def llm(messages: list[dict]) -> str:
        current = re.search(r"#Current value\n(.*)", messages[-1]["content"]).group(1)
        words = current.split()
        for w in ("alpha", "beta", "gamma"):
            if w not in words:
                return reply({"style": " ".join([*words, w])})
        return reply({"style": current})

    server = scripted_llm(llm)
    style = Param("base", name="style")
    examples = [{"want": w} for w in ("alpha", "beta", "gamma")]

    def evaluate(example: dict):
        out = render_answer(style, example["want"])
        ok = example["want"] in style.value.split()
        return (1.0 if ok else 0.0), ("contains it" if ok else f"missing '{example['want']}'"), out

    opt = ReflectivePareto([style], evaluate=evaluate, trainset=examples, valset=examples,
                           llm=spec_for(server), seed=1, minibatch_size=3)
    for _ in range(3):
        opt.step()
    best = opt.best()
    assert best.mean == 1.0 and style.value == best.values["style"]
    assert len(opt.pool) == 4 and opt.pool[0].mean == 0.0
    first = user_prompt(server.requests[0])
    assert "missing 'alpha'" in first and "render_answer(style=style" in first
    assert [c.id for c, _ in opt.front()] == [best.id]


def test_pareto_front_keeps_per_example_winners_and_merges() -> None:
    opt = object.__new__(ReflectivePareto)  # front/merge logic without an LLM
    opt.valset = [0, 1, 2]
    opt.pool = [
        Candidate(0, {"a": "a0", "b": "b0"}, (), [0.0, 0.0, 0.0]),
        Candidate(1, {"a": "a1", "b": "b0"}, (0,), [1.0, 0.0, 0.2]),
        Candidate(2, {"a": "a0", "b": "b1"}, (0,), [0.0, 1.0, 0.2]),
        Candidate(3, {"a": "a0", "b": "b0"}, (0,), [0.5, 0.0, 0.1]),  # dominated by 1
    ]
    front = dict((c.id, w) for c, w in opt.front())
    assert front == {1: 2, 2: 2}
    assert opt._ancestors(opt.pool[1]) & opt._ancestors(opt.pool[2]) == {0}


def test_numeric_optimizer_direct_and_requires_bounds() -> None:
    x = Param(-4.0, bounds=(-5.0, 5.0), name="x")
    k = Param("a", choices=["a", "b", "c"], name="k")
    opt = NumericOptimizer([x, k], seed=3)

    @trace
    def objective(xv: float, kv: str) -> float:
        return -((xv - 1.5) ** 2) + (0.5 if kv == "c" else 0.0)

    scores = []
    for _ in range(40):
        out = objective(x, k)
        scores.append(out.value)
        backward(out, out.value)
        opt.step()
    values, best = opt.apply_best()
    assert scores[0] == pytest.approx(-30.25)  # the initial values are the first trial
    assert best > -0.5 and best == max(scores) and x.value == values["x"]
    with pytest.raises(OptimizerError, match="needs bounds"):
        NumericOptimizer([Param(1.0, name="free")])
    with pytest.raises(OptimizerError, match="number or choice"):
        NumericOptimizer([Param("text", name="t")])


def test_numeric_improves_hyperparam_task_offline(tmp_path) -> None:
    pytest.importorskip("optuna", reason="the numeric optimizer needs the optional 'optuna' package")
    cfg = load_config(REPO / "tasks/hyperparam/optimize.yaml")
    cfg.iterations = 16
    cfg.output_dir = tmp_path / "out"
    result = optimize(cfg)
    assert result.best < 0.7 * result.baseline  # validation MSE (minimize)
    saved = (tmp_path / "out/best/params.yaml").read_text()
    assert f"epochs: {result.best_state['epochs']}" in saved
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["best"] == result.best and len(summary["history"]) == 16 and summary["llm"]["calls"] == 0


def _problems() -> dict[str, int]:
    lines = (REPO / "tasks/prompt_opt/problems.jsonl").read_text().splitlines()
    return {d["question"]: d["answer"] for d in map(json.loads, lines)}


@pytest.mark.parametrize("kind", ["optoprime", "opro", "pareto", "iterative_decoding", "best_of_n"])
def test_runner_prompt_opt_with_scripted_model(scripted_llm, tmp_path, kind) -> None:
    answers = _problems()
    better = "Solve step by step, then end with only the final integer."

    def model(messages: list[dict]) -> str:
        system, question = messages[0]["content"], messages[-1]["content"]
        if question in answers:  # the workflow's own call
            if "final integer" in system:
                return f"Working... so the answer is {answers[question]}"
            return f"There are {answers[question] + 1} or so, roughly."
        if question == "Reply with OK.":  # reachability probe
            return "OK"
        return reply({"instructions": better}, "the model never states a final integer")

    server = scripted_llm(model)
    cfg = load_config(REPO / "tasks/prompt_opt/optimize.yaml")
    cfg.llm = spec_for(server)
    cfg.optimizer.kind = kind
    cfg.iterations = 2
    cfg.output_dir = tmp_path / "out"
    result = optimize(cfg)
    assert result.baseline == 0.0 and result.best == 1.0 and result.best_iteration == 1
    assert (tmp_path / "out/best/instructions.txt").read_text() == better
    optimizer_prompts = [user_prompt(r) for r in server.requests
                         if user_prompt(r) not in answers and user_prompt(r) != "Reply with OK."]
    assert optimizer_prompts and "wrong: expected" in optimizer_prompts[0]
    if kind in ("optoprime", "pareto"):  # the others see scores and feedback text, not the graph
        assert "parse_answer" in optimizer_prompts[0]
    assert (tmp_path / "out/best_trace.html").read_text().startswith("<!DOCTYPE html>")


FIXED = '''def merge_intervals(intervals):
    merged = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged
'''


def test_runner_code_debug_repairs_function(scripted_llm, tmp_path) -> None:
    server = scripted_llm([
        "OK",  # reachability probe
        reply({"merge_intervals": "def merge_intervals(intervals) return []"}),
        reply({"merge_intervals": FIXED}),
    ])
    cfg = load_config(REPO / "tasks/code_debug/optimize.yaml")
    cfg.llm = spec_for(server)
    cfg.iterations = 2
    cfg.output_dir = tmp_path / "out"
    result = optimize(cfg)
    assert result.baseline < 1.0 and result.best == 1.0 and result.best_iteration == 2
    assert result.history[1]["rejected"]["merge_intervals"].count("does not compile") == 1
    assert "test failed" in user_prompt(server.requests[1])
    assert (tmp_path / "out/best/merge_intervals.py").read_text() == FIXED


def _write_config(tmp_path: Path, llm: str, kind: str = "optoprime") -> Path:
    cfg = tmp_path / "optimize.yaml"
    cfg.write_text(
        f"workflow: {REPO / 'tasks/code_debug/workflow.py'}\ndataset: {REPO / 'tasks/code_debug/tests.jsonl'}\n"
        f"optimizer: {{kind: {kind}}}\niterations: 1\noutput_dir: out\n{llm}"
    )
    return cfg


def test_cli_without_model_says_so_in_one_line(tmp_path, capsys) -> None:
    code = run_optimize_cli(_write_config(tmp_path, "llm: {models: []}\n"), iterations=None, output=None)
    err = capsys.readouterr().err
    assert code == 2
    assert "needs an LLM but no model is configured" in err and len(err.strip().splitlines()) == 1


def test_cli_unreachable_model_and_bad_config(tmp_path, capsys) -> None:
    llm = "llm: {models: [{name: openai/scripted, api_base: 'http://127.0.0.1:9/v1'}], max_retries: 0}\n"
    assert run_optimize_cli(_write_config(tmp_path, llm), iterations=1, output=tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "cannot use its LLM" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("workflow: nope.py\ndataset: x.jsonl\n")
    assert run_optimize_cli(bad, iterations=None, output=None) == 2
    assert "file not found" in capsys.readouterr().err


class _Box(Module):
    def __init__(self) -> None:
        self.x = Param(1.0, bounds=(0.0, 2.0))


def test_optimizer_needs_params_and_model() -> None:
    with pytest.raises(OptimizerError, match="no trainable Params"):
        OptoPrime([], llm=LLMSpec())
    with pytest.raises(OptimizerError, match="no model is configured"):
        OptoPrime(_Box(), llm=LLMSpec())
