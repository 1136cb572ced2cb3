"""Issue 16: fail loudly, explain every failure, migrate without surprises.

Each test names the item it guards. Runs are tiny (a few evaluations of a toy program in the
local sandbox); CLI checks go through typer's in-process runner where no signal is involved.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
import yaml
from test_evolve_e2e import EVALUATOR, PROGRAM, make_task
from typer.testing import CliRunner

from agentopt.cli import app
from agentopt.errors import AgentoptError, SandboxError, TaskError
from agentopt.evaluate import result_from_value
from agentopt.evolve.api import evolve, resume, with_llm_overrides
from agentopt.evolve.db import ProgramDB
from agentopt.evolve.failures import normalize_reason
from agentopt.evolve.health import FailureRate, RunAborted, output_tail
from agentopt.sandbox.used_imports import split_used
from agentopt.targets import load_any as load_task  # every format: task.yaml and OpenEvolve configs

runner = CliRunner()


def _task(tmp_path: Path, evaluator: str, extra: str = "", program: str = PROGRAM) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    task = make_task(tmp_path, extra)
    (tmp_path / "evaluator.py").write_text(textwrap.dedent(evaluator))
    (tmp_path / "program.py").write_text(program)
    return task


def _programs(run: Path, task: Path) -> list:
    spec = load_task(task)
    with ProgramDB.open(run / "programs.db", objective=spec.objective, search=spec.search) as db:
        return list(db.programs(order="iteration"))


# -- 1. a candidate's value never crashes the controller -----------------------------------------


def test_item1_huge_integers_from_a_candidate_are_recorded_not_fatal() -> None:
    r = result_from_value({"score": 1.0, "big": 10**400, "nested": [10**400]})
    assert r.ok and r.score == 1.0 and r.artifacts["big"].startswith("1000")
    r = result_from_value({"score": 10**400})
    assert not r.ok and r.error_kind == "bad_result" and "non-finite" in (r.error or "")
    r = result_from_value({"score": 1.0, "huge": 10**20000})  # beyond int->str digit limits
    assert r.ok and "digits" in r.artifacts["huge"]


# -- 2. a broken setup stops early, loudly --------------------------------------------------------


@pytest.mark.parametrize(
    ("evaluator", "expect"),
    [
        ("def evaluate(path)\n    return {'score': 1.0}\n", "SyntaxError"),
        ("def evaluat(path):\n    return {'score': 1.0}\n", "defines no function 'evaluate'"),
        ("def evaluate(path):\n    print('evaluator says hi')\n    raise RuntimeError('always broken')\n",
         "always broken"),
        ("def evaluate(path):\n    return [1.0]\n", "expected a dict"),
    ],
)
def test_item2_broken_evaluator_aborts_after_the_initial_program(tmp_path: Path, evaluator: str, expect: str) -> None:
    task = _task(tmp_path, evaluator, "search: {iterations: 50}\n")
    with pytest.raises(RunAborted, match=expect) as info:
        evolve(task, output_dir=tmp_path / "run")
    assert info.value.exit_code == 1 and "validate --run" in str(info.value)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["evaluations"] == 1 and summary["stop_reason"].startswith("aborted:")
    # resume does not burn the budget either while the evaluator stays broken
    with pytest.raises(RunAborted):
        resume(tmp_path / "run")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["programs"] == 1


def test_item2_validate_run_shows_the_result_or_the_guest_output(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    ok = runner.invoke(app, ["validate", "--run", str(make_task(tmp_path / "a"))])
    assert ok.exit_code == 0 and "initial program scores score = 1" in ok.output, ok.output
    bad = _task(tmp_path / "b", "import sys\ndef evaluate(path):\n    print('\\x1b[31mdebug line\\x1b[0m', "
                "file=sys.stderr)\n    raise ValueError('bad config')\n")
    out = runner.invoke(app, ["validate", "--run", str(bad)])
    assert out.exit_code == 1 and "bad config" in out.output and "debug line" in out.output
    assert "\x1b" not in out.output


def test_item2_absurd_limits_are_config_errors(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    task.write_text(task.read_text().replace("timeout_s: 20", "timeout_s: 1e308"))
    with pytest.raises(TaskError, match="sandbox.timeout_s"):
        load_task(task)
    task.write_text(task.read_text().replace("timeout_s: 1e308", "timeout_s: 5").replace("memory_mb: 1024", "memory_mb: 100000000000000000000"))
    with pytest.raises(TaskError, match="sandbox.memory_mb"):
        load_task(task)


def test_item2_max_failure_rate_stops_a_run_whose_children_all_fail(tmp_path: Path) -> None:
    evaluator = """\
        def evaluate(path):
            if "return 1.0\\n" not in open(path).read():
                raise RuntimeError("only the initial program passes")
            return {"score": 1.0}
        """
    extra = "search: {iterations: 40, max_failure_rate: 0.9, failure_window: 4}\n"
    with pytest.raises(RunAborted, match="4 of the last 4 evaluated candidates failed"):
        evolve(_task(tmp_path, evaluator, extra), output_dir=tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["evaluations"] <= 8 and summary["failures"] >= 4


# -- 5. the objective metric must exist; booleans are not scores ----------------------------------


def test_item5_missing_metric_names_what_the_evaluator_returned(tmp_path: Path) -> None:
    r = result_from_value({"acc": 0.9, "latency": 3.0}, "accuracy")
    assert not r.ok and "no 'accuracy'" in (r.error or "") and "'acc', 'latency'" in (r.error or "")
    assert result_from_value({"acc": 0.5, "x": 1.5}, "accuracy", if_missing="mean").score == 1.0
    r = result_from_value({"score": True})
    assert not r.ok and "boolean" in (r.error or "")
    task = _task(tmp_path, EVALUATOR, "objective: {metric: scroe}\nsearch: {iterations: 20}\n")
    with pytest.raises(RunAborted, match="no 'scroe'.*'score', 'value'"):
        evolve(task, output_dir=tmp_path / "run")


# -- 6 / 7. failures are explained: output tail stored, grouped in reports -------------------------


def test_item6_output_tail_is_stored_shown_and_inert(tmp_path: Path) -> None:
    program = PROGRAM.replace("return 1.0", "print('candidate speaking'); return 1.0")
    evaluator = """\
        import sys
        from agentopt_guest import call_candidate

        def evaluate(path):
            value = call_candidate(path, "solve", timeout=5)
            if "return 1.0\\n" in open(path).read():
                return {"score": float(value)}
            print("x" * 9000, file=sys.stderr)
            print("\\x1b]0;owned\\x07evaluator noise", file=sys.stderr)
            raise RuntimeError("child rejected at line 7")
        """
    task = _task(tmp_path, evaluator, "search: {iterations: 3, seed: 1}\n", program=program)
    evolve(task, output_dir=tmp_path / "run")
    stored = _programs(tmp_path / "run", task)
    failed = [p for p in stored if p.error]
    assert failed, "the symbolic mutator changed the constant, so children fail"
    tail = failed[0].output_tail
    assert "candidate speaking" not in tail  # 9000 characters of noise came after it: capped
    assert "evaluator noise" in tail and "RuntimeError: child rejected at line 7" in tail  # the traceback
    assert "in evaluate" in tail and "earlier characters dropped" in tail
    assert "\x1b" not in tail and "\x07" not in tail and len(tail) <= 4100
    assert stored[0].output_tail == ""  # successes store nothing
    out = runner.invoke(app, ["report", str(tmp_path / "run")])
    assert out.exit_code == 0, out.output
    assert "why candidates failed" in out.output and "rejected at line N" in out.output, out.output
    assert "evaluator noise" in out.output and "rejected mutations" in out.output
    page = (tmp_path / "run" / "report.html").read_text()
    assert "Failures and rejected children" in page and "evaluator noise" in page and "\x1b" not in page


def test_item6_candidate_prints_reach_the_tail(tmp_path: Path) -> None:
    program = PROGRAM.replace("return 1.0", "print('candidate speaking'); raise SystemExit(3)")
    evaluator = """\
        from agentopt_guest import call_candidate

        def evaluate(path):
            return {"score": float(call_candidate(path, "solve", timeout=5))}
        """
    out = runner.invoke(app, ["validate", "--run", str(_task(tmp_path, evaluator, program=program))])
    assert out.exit_code == 1 and "candidate speaking" in out.output, out.output


def test_item6_output_tail_keeps_the_end_and_strips_controls() -> None:
    tail = output_tail("a" * 10 + "\n" + "b" * 5000 + "\nlast line\x1b[2J\r\n")
    assert tail.endswith("last line") and "earlier characters dropped" in tail and "\x1b" not in tail
    assert normalize_reason("line 12 in /tmp/x/y/cand.py: 0xdeadbeefcafe") == normalize_reason(
        "line 99 in /tmp/z/cand.py: 0xfeedfacefeed"
    )


def test_item2_failure_rate_window() -> None:
    rate = FailureRate(0.5, 4)
    assert [rate.record(f) for f in (True, False, True)] == [None, None, None]
    assert rate.record(True) is not None  # 3 of 4 > 0.5
    assert FailureRate(None, 4).record(True) is None


# -- 9. a replay-only run whose cache lacks an answer fails ----------------------------------------


def test_item9_diverged_replay_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "cache.jsonl").write_text("")
    extra = (
        "llm: {models: [{name: openai/x, api_base: 'http://127.0.0.1:9/v1'}], cache: cache.jsonl, replay_only: true}\n"
        "search: {iterations: 5}\n"
    )
    with pytest.raises(AgentoptError, match="replay-only LLM cache") as info:
        evolve(make_task(tmp_path, extra), output_dir=tmp_path / "run")
    assert info.value.exit_code != 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["rejected_replies"] == 0


# -- 10 / 11. resume keeps -n and the summary counts every session ----------------------------------


class _StopAt:
    """A reporter that presses Ctrl-C (raises KeyboardInterrupt) once iteration ``n`` is committed."""

    def __init__(self, n: int) -> None:
        self.n = n

    def start(self, **_):
        pass

    def message(self, text):
        pass

    def update(self, *, iteration, **_):
        if iteration >= self.n:
            raise KeyboardInterrupt

    def finish(self, summary):
        pass


def test_item10_11_resume_keeps_the_explicit_total_and_counts_all_sessions(tmp_path: Path) -> None:
    task = make_task(tmp_path, "search: {iterations: 2, seed: 7}\n")
    with pytest.raises(KeyboardInterrupt):
        evolve(task, iterations=5, output_dir=tmp_path / "run", reporter=_StopAt(2))
    summary = resume(tmp_path / "run")
    assert summary.iterations == 5, "resume must keep `-n 5`, not the file's 2"
    programs = len(_programs(tmp_path / "run", task))
    assert summary.evaluations + summary.cache_hits >= programs - 1  # whole run, not the last session
    assert summary.session_evaluations < summary.evaluations
    assert resume(tmp_path / "run", iterations=6).iterations == 6  # an explicit -n still wins


# -- 12. -o never writes into an unrelated non-empty folder ----------------------------------------


def test_item12_output_into_non_empty_folder_is_refused(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    out = runner.invoke(app, ["evolve", str(task), "-o", str(tmp_path / "busy"), "-q"])
    assert out.exit_code == 2 and "not empty" in out.output
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["notes.txt"]


# -- 13. task file problems are one line naming the file --------------------------------------------


def test_item13_empty_binary_duplicate_folder_and_type_names(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(TaskError, match="empty.yaml: the task file is empty"):
        load_task(empty)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x01garbage")
    with pytest.raises(TaskError, match="bin.yaml: not a text task file"):
        load_task(binary)
    dup = tmp_path / "dup.yaml"
    dup.write_text(task.read_text() + "search: {iterations: 1}\nsearch: {iterations: 2}\n")
    with pytest.raises(TaskError, match="dup.yaml: line .*duplicate key 'search'"):
        load_task(dup)
    with pytest.raises(TaskError, match=f"is a folder, not a task file; pass {tmp_path / 'task.yaml'}"):
        load_task(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("program: {a: 1}\nevaluator: evaluator.py\n")
    with pytest.raises(TaskError) as info:
        load_task(bad)
    assert "<class" not in str(info.value) and "key 'program'" in str(info.value)
    out = runner.invoke(app, ["validate", str(binary)])
    assert out.exit_code == 2 and "bin.yaml" in out.output and "internal error" not in out.output


# -- 14 / 15 / 16 / 17. OpenEvolve migration ---------------------------------------------------------


def _oe_folder(tmp_path: Path, config: dict, evaluator: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "initial_program.py").write_text(PROGRAM)
    (tmp_path / "evaluator.py").write_text(textwrap.dedent(evaluator))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "config.yaml"


def test_item14_api_base_without_key_uses_openai_api_key_like_openevolve(tmp_path: Path) -> None:
    cfg = _oe_folder(tmp_path, {"llm": {"api_base": "http://localhost:8000/v1", "models": [{"name": "m"}]}},
                     "def evaluate(p):\n    return {'combined_score': 1.0}\n")
    (model,) = load_task(cfg).llm.models
    assert (model.api_base, model.api_key_env) == ("http://localhost:8000/v1", "OPENAI_API_KEY")


def test_item15_cascade_without_combined_score_averages_every_stage_like_openevolve(tmp_path: Path) -> None:
    evaluator = """\
        def evaluate_stage1(path):
            return {"a": 2.0, "passed": True}

        def evaluate_stage2(path):
            return {"b": 4.0, "c": 6.0}

        def evaluate(path):
            return evaluate_stage2(path)
        """
    cfg = _oe_folder(tmp_path, {"max_iterations": 0, "evaluator": {"cascade_thresholds": [0.0]}}, evaluator)
    spec = load_task(cfg)
    assert spec.objective.if_missing == "mean" and spec.cascade.enabled
    summary = evolve(spec, output_dir=tmp_path / "run")
    assert summary.initial_score == pytest.approx(4.0)  # mean(a, b, c) as OpenEvolve; not stage 2's 5.0


def test_item16_unused_missing_requirements_warn_used_ones_stop(tmp_path: Path) -> None:
    evaluator = "import json\n\ndef evaluate(p):\n    return {'combined_score': 1.0}\n"
    cfg = _oe_folder(tmp_path / "oe", {"max_iterations": 0}, evaluator)
    (cfg.parent / "requirements.txt").write_text("agentopt-fixture-no-such-package>=1\n")
    messages: list[str] = []

    class Collect(_StopAt):
        def message(self, text):
            messages.append(text)

    summary = evolve(cfg, output_dir=tmp_path / "run", reporter=Collect(99))
    assert summary.initial_score == 1.0
    assert any("agentopt-fixture-no-such-package" in m and "nothing" in m for m in messages), messages
    (cfg.parent / "evaluator.py").write_text("import agentopt_fixture_no_such_package\n" + evaluator)
    with pytest.raises(SandboxError, match="agentopt-fixture-no-such-package"):
        evolve(cfg, output_dir=tmp_path / "run2")
    sources = [cfg.parent / "evaluator.py"]
    assert split_used(["scikit-learn>=1", "PyYAML", "agentopt-fixture-no-such-package"], sources) == (
        ["agentopt-fixture-no-such-package"], ["scikit-learn>=1", "PyYAML"])  # fmt: skip


def test_item17_model_and_api_base_overrides_from_flags_and_env(tmp_path: Path) -> None:
    spec = load_task(make_task(tmp_path, "llm: {models: [{name: openai/a, api_key_env: K}, {name: openai/b}]}\n"))
    one = with_llm_overrides(spec, model="qwen", api_base="http://h:1/v1")
    assert [(m.name, m.api_base, m.api_key_env) for m in one.llm.models] == [("openai/qwen", "http://h:1/v1", "K")]
    assert [m.api_base for m in with_llm_overrides(spec, api_base="http://h:2/v1").llm.models] == ["http://h:2/v1"] * 2
    (tmp_path / "cli").mkdir()
    task = make_task(tmp_path / "cli")
    out = runner.invoke(app, ["evolve", str(task), "-o", str(tmp_path / "r"), "-q", "--model", "m",
                              "--api-base", "http://127.0.0.1:9/v1"])
    assert out.exit_code == 2 and "127.0.0.1:9" in out.output, out.output  # the override was used
    env = {**os.environ, "AGENTOPT_API_BASE": "http://127.0.0.1:9/v1", "AGENTOPT_MODEL": "m"}
    out = runner.invoke(app, ["evolve", str(task), "-o", str(tmp_path / "r"), "-q"], env=env)
    assert out.exit_code == 2 and "127.0.0.1:9" in out.output, out.output


# -- 4. max_usd works for unpriced models: a warning, and prices in the model entry ---------------


def test_item4_unpriced_models_warn_and_model_prices_drive_the_budget(tmp_path: Path, scripted_llm) -> None:
    from test_evolve_e2e import incrementing_reply

    server = scripted_llm(incrementing_reply)
    model = f"{{name: openai/local-thing, api_base: '{server.base_url}'"
    task = make_task(tmp_path, f"llm: {{models: [{model}}}]}}\nsearch: {{iterations: 2, budget: {{max_usd: 1.0}}}}\n")
    messages: list[str] = []

    class Collect(_StopAt):
        def message(self, text):
            messages.append(text)

    evolve(task, output_dir=tmp_path / "a", reporter=Collect(99))
    assert any("max_usd cannot limit openai/local-thing" in m for m in messages), messages
    priced = f"{model}, usd_per_million_input_tokens: 100000, usd_per_million_output_tokens: 100000}}"
    task.write_text(task.read_text().replace(f"{model}}}", priced).replace("max_usd: 1.0", "max_usd: 0.5"))
    messages.clear()
    summary = evolve(task, iterations=50, output_dir=tmp_path / "b", reporter=Collect(99))
    assert not any("max_usd cannot limit" in m for m in messages), messages
    assert summary.cost_usd >= 0.5 and "budget" in summary.stop_reason and summary.iterations < 50


# -- 8. the progress bar advances on rejected children; ETA and "new best" lines in a terminal ------


def test_item8_progress_advances_on_rejections_and_prints_new_best_in_a_tty() -> None:
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from agentopt.cli_progress import RichReporter
    from agentopt.evolve.controller import RunStats

    buffer = io.StringIO()
    reporter = RichReporter(Console(file=buffer, force_terminal=True, width=160), enabled=True)
    reporter.start(total=10, done=0, mutator="llm: m")
    stats = RunStats()
    reporter.update(iteration=1, program=SimpleNamespace(), best=SimpleNamespace(score=1.0), stats=stats)
    reporter.update(iteration=2, program=None, best=SimpleNamespace(score=1.0), stats=stats)  # rejected reply
    assert reporter._progress.tasks[0].completed == 2
    reporter.update(iteration=3, program=SimpleNamespace(), best=SimpleNamespace(score=2.5), stats=stats)
    reporter.close()
    text = buffer.getvalue()
    assert "iteration 3: new best 2.5" in text and "eta" in text
