"""task.yaml loading: every user mistake is one line naming the key and the file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentopt.errors import TaskError
from agentopt.task import json_schema, load_task

PROGRAM = "# EVOLVE-BLOCK-START\nx = 1\n# EVOLVE-BLOCK-END\n"


def write_task(tmp_path: Path, text: str) -> Path:
    (tmp_path / "prog.py").write_text(PROGRAM)
    (tmp_path / "ev.py").write_text("def evaluate(p):\n    return {'score': 1.0}\n")
    task = tmp_path / "task.yaml"
    task.write_text(text)
    return task


def test_minimal_task_resolves_paths_relative_to_file(tmp_path: Path) -> None:
    spec = load_task(write_task(tmp_path, "program: prog.py\nevaluator: ev.py\n"))
    assert spec.program == (tmp_path / "prog.py").resolve()
    assert spec.evaluator == (tmp_path / "ev.py").resolve()
    assert spec.objective.metric == "score" and spec.objective.direction == "maximize"
    assert spec.sandbox.network is False


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("program: prog.py\nevaluator: ev.py\nsearch: {iteratons: 5}\n", "unknown key 'search.iteratons'"),
        ("program: prog.py\nevaluator: ev.py\nsearch: {iterations: many}\n", "key 'search.iterations'"),
        ("evaluator: ev.py\nsearch: {iterations: 3}\n", "missing required key 'program'"),
        ("program: nope.py\nevaluator: ev.py\n", "key 'program': file not found"),
        ("program: prog.py\nevaluator: ev.py\nobjective: {direction: up}\n", "key 'objective.direction'"),
        ("program: prog.py\nevaluator: ev.py\nsandbox: {timeout_s: -1}\n", "key 'sandbox.timeout_s'"),
        ("program: prog.py\nevaluator: ev.py\nllm: {models: [{name: a, weight: 0}]}\n", "key 'llm.models.0.weight'"),
        ("program: [unclosed\n", "invalid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_errors_are_one_line_naming_key_and_file(tmp_path: Path, body: str, expected: str) -> None:
    task = write_task(tmp_path, body)
    with pytest.raises(TaskError) as info:
        load_task(task)
    message = str(info.value)
    assert expected in message
    assert str(task) in message
    assert "\n" not in message


def test_unbalanced_markers_rejected(tmp_path: Path) -> None:
    task = write_task(tmp_path, "program: prog.py\nevaluator: ev.py\n")
    (tmp_path / "prog.py").write_text("# EVOLVE-BLOCK-START\nx = 1\n")
    with pytest.raises(TaskError, match="unbalanced"):
        load_task(task)


def test_models_shorthand_and_schema(tmp_path: Path) -> None:
    spec = load_task(write_task(tmp_path, "program: prog.py\nevaluator: ev.py\nllm: {models: [openai/x]}\n"))
    assert spec.llm.models[0].name == "openai/x" and spec.llm.models[0].weight == 1.0
    schema = json.loads(json_schema())
    assert "program" in schema["properties"] and "task_file" not in schema["properties"]
    assert schema["additionalProperties"] is False


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentopt.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


def test_cli_validate_exit_codes(tmp_path: Path) -> None:
    good = write_task(tmp_path, "program: prog.py\nevaluator: ev.py\n")
    ok = run_cli("validate", str(good))
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stdout
    good.write_text("program: prog.py\nevaluator: ev.py\nbogus: 1\n")
    bad = run_cli("validate", str(good))
    assert bad.returncode == 2
    lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "unknown key 'bogus'" in lines[0]
    assert "Traceback" not in bad.stderr


def test_cli_schema_prints_json() -> None:
    out = run_cli("schema")
    assert out.returncode == 0
    assert json.loads(out.stdout)["title"] == "agentopt task.yaml"


def test_cli_help_does_not_import_litellm() -> None:
    code = "import sys; from agentopt.cli import app; print('litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_init_scaffold_validates(tmp_path: Path) -> None:
    target = tmp_path / "mytask"
    out = run_cli("init", str(target))
    assert out.returncode == 0, out.stderr
    assert run_cli("validate", str(target / "task.yaml")).returncode == 0
    again = run_cli("init", str(target))
    assert again.returncode == 2 and "already exist" in again.stderr
