"""OpenEvolve task folders run unmodified: config translation, task.yaml import, the guest
``openevolve`` shim, requirements checks, and whole evolution runs (offline and against a
real scripted OpenAI-compatible server)."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentopt.errors import AgentoptError, SandboxError, TaskError
from agentopt.sandbox.requirements import (
    format_missing,
    missing_requirements,
    parse_requirement,
    read_requirements_file,
)
from agentopt.targets import load_any
from agentopt.targets.openevolve import (
    _PLAIN,
    litellm_model_name,
    looks_like_openevolve,
    run_import_cli,
    task_from_openevolve,
    translate,
    write_task_yaml,
)
from agentopt.task import TaskSpec

try:  # `python -m pytest` (repo root on sys.path) or plain `pytest` (tests/ on sys.path)
    from tests.llm_server import ScriptedOpenAIServer
except ImportError:  # pragma: no cover
    from llm_server import ScriptedOpenAIServer  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
LITERAL_KEY = "sk-fixture-LITERAL-do-not-copy-1234567890"


def folder(tmp_path: Path, name: str) -> Path:
    """A private copy of a fixture folder (runs and task.yaml are written into it)."""
    dest = tmp_path / name
    shutil.copytree(FIXTURES / name, dest)
    return dest


def write_config(dest: Path, config: dict[str, Any]) -> Path:
    path = dest / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def dotted(data: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        data = data[part]
    return data


def minimal(tmp_path: Path, config: dict[str, Any], evaluator: str | None = None) -> Path:
    dest = folder(tmp_path, "openevolve_dict")
    if evaluator is not None:
        (dest / "evaluator.py").write_text(evaluator)
    return write_config(dest, config)


# -- translation ---------------------------------------------------------------------------------


def test_every_mapped_key_reaches_the_taskspec() -> None:
    config_path = FIXTURES / "openevolve_full" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    spec = load_any(config_path)  # load_any recognises an OpenEvolve config by itself
    dumped = spec.model_dump()
    for oe_key, (ao_key, _) in _PLAIN.items():  # the fixture sets every one of them
        assert dotted(dumped, ao_key) == dotted(config, oe_key), oe_key
    assert spec.sandbox.cpus == 1.5 and spec.llm.temperature == 0.55
    assert spec.search.seed == 1234
    assert spec.search.mode == "rewrite"  # diff_based_evolution: false
    assert spec.llm.system_message == config["prompt"]["system_message"]
    assert spec.objective.metric == "combined_score" and spec.objective.direction == "maximize"
    assert spec.cascade.enabled is False
    assert [m.name for m in spec.llm.models] == ["openai/gpt-4o-mini", "openai/google/gemini-2.0-flash"]
    first, second = spec.llm.models
    assert (first.weight, first.api_base, first.api_key_env) == (0.8, "https://api.openai.example/v1", None)
    assert (second.weight, second.api_base, second.api_key_env) == (
        0.2, "https://openrouter.example/api/v1", "OPENROUTER_API_KEY")  # fmt: skip
    assert spec.extra_files == [config_path.parent / "data.csv"]
    assert spec.name == "openevolve_full"


def test_unsupported_and_unknown_keys_warn_once_each_and_never_echo_values() -> None:
    spec = load_any(FIXTURES / "openevolve_full" / "config.yaml")
    keys = [w.split("'")[1] for w in spec.load_warnings]
    assert sorted(keys) == sorted([
        "llm.api_key", "checkpoint_interval", "log_level", "convergence_threshold", "llm.top_p",
        "prompt.use_template_stochasticity", "database.log_prompts", "evaluator.max_retries",
        "some_unknown_key",
    ])  # fmt: skip
    text = "\n".join(spec.load_warnings)
    assert "config.yaml: key 'database.log_prompts' is not supported by agentopt; ignored" in text
    assert LITERAL_KEY not in text and "secret-looking-value-xyz" not in text
    assert all("\n" not in w for w in spec.load_warnings)
    assert LITERAL_KEY not in spec.model_dump_json()


def test_absent_keys_take_openevolve_defaults(tmp_path: Path) -> None:
    evaluator = "def evaluate_stage1(p):\n    return {'combined_score': 1.0}\n\ndef evaluate(p):\n    return {'x': 1}\n"
    spec = task_from_openevolve(cfg := minimal(tmp_path, {"llm": {"models": [{"name": "m"}]}}, evaluator),
                                yaml.safe_load(cfg.read_text()))
    assert spec.search.iterations == 10000 and spec.search.seed == 42
    assert spec.search.num_islands == 5 and spec.search.migration_interval == 50
    assert spec.search.max_code_length == 10000 and spec.search.mode == "diff"
    assert spec.sandbox.timeout_s == 300 and spec.llm.timeout_s == 60 and spec.llm.max_retries == 3
    # cascade_evaluation defaults to true and the evaluator defines evaluate_stage1
    assert spec.cascade.enabled is True and spec.cascade.thresholds == [0.5, 0.75, 0.9]
    assert spec.objective.metric == "combined_score"
    assert spec.load_warnings == []


def test_cascade_without_stage_functions_is_plain_evaluate_like_openevolve(tmp_path: Path) -> None:
    cfg = minimal(tmp_path, {"evaluator": {"cascade_evaluation": True, "cascade_thresholds": [0.3]}})
    spec = load_any(cfg)
    assert spec.cascade.enabled is False and spec.load_warnings == []
    spec = load_any(folder(tmp_path, "openevolve_cascade") / "config.yaml")
    assert spec.cascade.enabled is True and spec.cascade.thresholds == [0.1, 0.8]


def test_primary_secondary_models_top_level_api_base_and_env_keys(tmp_path: Path) -> None:
    cfg = minimal(tmp_path, {
        "api_base": "http://localhost:8000/v1",
        "llm": {"primary_model": "llama3", "primary_model_weight": 0.7, "secondary_model": "qwen",
                "api_key": "${LOCAL_KEY}", "temperature": 0.2},
    })  # fmt: skip
    spec = load_any(cfg)
    assert [(m.name, m.weight, m.api_base, m.api_key_env) for m in spec.llm.models] == [
        ("openai/llama3", 0.7, "http://localhost:8000/v1", "LOCAL_KEY"),
        ("openai/qwen", 0.2, "http://localhost:8000/v1", "LOCAL_KEY"),  # OpenEvolve's secondary default 0.2
    ]
    assert spec.load_warnings == []
    assert litellm_model_name("google/gemini-2.0-flash") == "openai/google/gemini-2.0-flash"


def test_per_model_settings_are_lifted_when_all_models_agree(tmp_path: Path) -> None:
    cfg = minimal(tmp_path, {"llm": {"models": [{"name": "a", "temperature": 0.4, "max_tokens": 999},
                                                {"name": "b", "temperature": 0.4}]}})
    spec = load_any(cfg)
    assert spec.llm.temperature == 0.4
    assert [w.split("'")[1] for w in spec.load_warnings] == ["llm.models.0.max_tokens"]


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"evaluator": {"use_llm_feedback": True}}, "evaluator.use_llm_feedback"),
        ({"prompt": {"template_dir": "templates"}}, "prompt.template_dir"),
        ({"prompt": {"programs_as_changes_description": True}}, "prompt.programs_as_changes_description"),
        ({"llm": {"provider": "claude_code", "models": [{"name": "x"}]}}, "llm.provider"),
        ({"llm": {"models": [{"name": "x", "provider": "copilot_cli"}]}}, "llm.models.0.provider"),
        ({"llm": {"manual_mode": True}}, "llm.manual_mode"),
    ],
)
def test_keys_that_would_change_results_are_refused(tmp_path: Path, config: dict, key: str) -> None:
    cfg = minimal(tmp_path, config)
    with pytest.raises(TaskError) as err:
        load_any(cfg)
    message = str(err.value)
    assert f"key '{key}'" in message and "\n" not in message and str(cfg) in message


def test_invalid_values_are_reported_by_their_openevolve_key(tmp_path: Path) -> None:
    cfg = minimal(tmp_path, {"database": {"num_islands": 0}})
    with pytest.raises(TaskError, match=r"key 'database.num_islands' \(agentopt 'search.num_islands'\)"):
        load_any(cfg)
    cfg = minimal(tmp_path / "b", {"llm": {"models": [{"weight": 1.0}]}})
    with pytest.raises(TaskError, match="llm.models.0.name"):
        load_any(cfg)


def test_folder_problems_are_one_line_errors(tmp_path: Path) -> None:
    dest = folder(tmp_path, "openevolve_dict")
    (dest / "evaluator.py").unlink()
    with pytest.raises(TaskError, match="no evaluator.py"):
        load_any(dest / "config.yaml")
    dest = folder(tmp_path / "two", "openevolve_dict")
    (dest / "initial_program.js").write_text("// EVOLVE-BLOCK-START\n// EVOLVE-BLOCK-END\n")
    assert load_any(dest / "config.yaml").program.name == "initial_program.py"  # .py wins, like OpenEvolve
    (dest / "initial_program.py").unlink()
    assert load_any(dest / "config.yaml").program.name == "initial_program.js"  # the single one
    (dest / "initial_program.rs").write_text("fn main() {}\n")
    with pytest.raises(TaskError, match="several initial programs"):
        load_any(dest / "config.yaml")


def test_detection_does_not_hijack_agentopt_task_files(tmp_path: Path) -> None:
    oe = FIXTURES / "openevolve_dict" / "config.yaml"
    assert looks_like_openevolve(oe, yaml.safe_load(oe.read_text()))
    assert looks_like_openevolve(oe, {"llm": {"primary_model": "x"}})
    assert looks_like_openevolve(oe, {"evaluator": {"timeout": 5}})
    assert looks_like_openevolve(oe, {"llm": {"temperature": 0.5}})  # initial_program.py beside it
    lone = tmp_path / "task.yaml"
    lone.write_text("evaluator: evaluator.py\n")
    assert not looks_like_openevolve(lone, {"evaluator": "evaluator.py"})
    assert not looks_like_openevolve(oe, {"search": {"iterations": 3}, "evaluator": "e.py"})
    with pytest.raises(TaskError, match="missing required key 'program'"):
        load_any(lone)  # an agentopt task with a typo keeps agentopt's own error


def test_sibling_files_travel_but_outputs_do_not(tmp_path: Path) -> None:
    dest = folder(tmp_path, "openevolve_full")
    (dest / "openevolve_output").mkdir()
    (dest / "openevolve_output" / "best.py").write_text("x = 1\n")
    (dest / "helpers").mkdir()
    (dest / "helpers" / "util.py").write_text("K = 1\n")
    (dest / "__pycache__").mkdir()
    spec = load_any(dest / "config.yaml")
    assert sorted(p.name for p in spec.extra_files) == ["data.csv", "helpers"]


# -- task.yaml import ----------------------------------------------------------------------------


def test_import_writes_an_equivalent_commented_task_yaml(tmp_path: Path) -> None:
    dest = folder(tmp_path, "openevolve_full")
    out = write_task_yaml(dest)
    assert out == dest / "task.yaml"
    text = out.read_text()
    from_yaml = load_any(out).model_dump(exclude={"task_file", "load_warnings"})
    from_config = load_any(dest / "config.yaml").model_dump(exclude={"task_file", "load_warnings"})
    assert from_yaml == from_config
    assert "num_islands: 3  # from OpenEvolve 'database.num_islands'" in text
    assert "#   database.log_prompts: agentopt always records prompts" in text
    assert LITERAL_KEY not in text and "secret-looking-value-xyz" not in text
    # Every key of config.yaml is accounted for in the file: mapped, dropped or honoured.
    config = yaml.safe_load((dest / "config.yaml").read_text())
    for key, value in config.items():
        subkeys = [f"{key}.{sub}" for sub in value] if isinstance(value, dict) else [key]
        for sub in subkeys:
            assert f"'{sub}'" in text or f"#   {sub}" in text, sub


def test_import_refuses_to_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = folder(tmp_path, "openevolve_full")
    assert run_import_cli(dest, force=False) == 0
    captured = capsys.readouterr()
    assert f"wrote {dest / 'task.yaml'}" in captured.out
    assert "warning: config.yaml: key 'log_level'" in captured.err and LITERAL_KEY not in captured.err
    before = (dest / "task.yaml").read_text()
    assert run_import_cli(dest, force=False) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "already exists" in err and "--force" in err and "\n" not in err
    with pytest.raises(TaskError):
        write_task_yaml(dest)
    (dest / "task.yaml").write_text("stale")
    assert write_task_yaml(dest, force=True).read_text() == before


def test_import_of_a_config_agentopt_cannot_honour_writes_nothing(tmp_path: Path) -> None:
    cfg = minimal(tmp_path, {"evaluator": {"use_llm_feedback": True}})
    with pytest.raises(TaskError, match="use_llm_feedback"):
        write_task_yaml(cfg.parent)
    assert not (cfg.parent / "task.yaml").exists()


# -- requirements -------------------------------------------------------------------------------


def test_missing_requirements_checks_names_versions_and_markers() -> None:
    reqs = read_requirements_file(FIXTURES / "openevolve_missing_req" / "requirements.txt")
    assert reqs == ["numpy>=1.20", "agentopt-fixture-no-such-package>=1.0", 'PyYAML; python_version < "3"']
    assert missing_requirements(reqs) == ["agentopt-fixture-no-such-package>=1.0"]
    assert missing_requirements(["numpy<1.0", "NumPy>=1", "py_yaml_not_there", "pyyaml"]) == [
        "numpy<1.0", "py_yaml_not_there"]  # fmt: skip
    assert missing_requirements([]) == []
    spec = load_any(FIXTURES / "openevolve_missing_req" / "config.yaml")
    assert spec.sandbox.requirements == reqs


def test_missing_requirements_asks_the_target_interpreter(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    python = str(bare / "bin" / "python")
    # yaml is installed for the host interpreter but not in the bare venv.
    assert missing_requirements(["pyyaml", "numpy>=1"], python=python) == ["pyyaml", "numpy>=1"]
    with pytest.raises(SandboxError, match="cannot run"):
        missing_requirements(["numpy"], python=str(tmp_path / "no-python"))


def test_format_missing_is_one_actionable_line(tmp_path: Path) -> None:
    assert format_missing(["numba>=0.58", "scipy"]) == (
        "missing packages for evaluator: numba>=0.58, scipy — install with: pip install 'numba>=0.58' scipy"
    )
    line = format_missing(["x"], tmp_path / "requirements.txt")
    assert line.endswith(f"(listed in {tmp_path / 'requirements.txt'})") and "\n" not in line


def test_requirements_files_follow_includes_and_skip_options(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("scipy>=1  # base\n")
    (tmp_path / "requirements.txt").write_text(
        "--index-url https://example.invalid/simple\n-r base.txt\n\n# c\nnumba[cuda]>=0.58 --hash=sha256:00\n"
    )
    assert read_requirements_file(tmp_path / "requirements.txt") == ["scipy>=1", "numba[cuda]>=0.58"]
    parsed = parse_requirement("numba[cuda]>=0.58,<1; python_version >= '3'")
    assert (parsed.name, parsed.extras, parsed.marker) == ("numba", ["cuda"], 'python_version >= "3"')
    with pytest.raises(AgentoptError, match="invalid requirement"):
        parse_requirement("not a requirement !!")


# -- guest shim -----------------------------------------------------------------------------------


def test_guest_shim_answers_openevolve_imports_without_agentopt(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(REPO / 'evaluators')!r})
        from openevolve.evaluation_result import EvaluationResult
        from openevolve.evaluator import EvaluationResult as Again
        r = EvaluationResult(metrics={{"combined_score": 0.5}}, artifacts={{"log": "hi", "raw": b"abc"}})
        print(json.dumps({{"same": Again is EvaluationResult, "size": r.get_total_artifact_size(),
                          "dict": EvaluationResult.from_dict({{"a": 1}}).to_dict(), "keys": r.get_artifact_keys(),
                          "agentopt": any(m.startswith("agentopt") for m in sys.modules)}}))
        """
    )
    out = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path, check=True)
    assert json.loads(out.stdout) == {"same": True, "size": 5, "dict": {"a": 1}, "keys": ["log", "raw"],
                                      "agentopt": False}


# -- whole runs ----------------------------------------------------------------------------------


def _evolve(config: Path, run: Path, **kw: Any) -> Any:
    from agentopt.evolve.api import evolve

    return evolve(config, output_dir=run, **kw)


def test_offline_run_of_an_unmodified_folder_improves(tmp_path: Path) -> None:
    dest = folder(tmp_path, "openevolve_dict")
    summary = _evolve(dest / "config.yaml", tmp_path / "run")
    assert summary.initial_score == pytest.approx(1 / 5)  # solve() returns 1.0, target 5
    assert summary.best_score > summary.initial_score
    assert summary.evaluations >= 6
    assert "return" in Path(summary.best_program_path).read_text()
    assert sorted(p.name for p in dest.iterdir()) == ["config.yaml", "evaluator.py", "initial_program.py"]


def test_offline_run_with_cascade_stages(tmp_path: Path) -> None:
    dest = folder(tmp_path, "openevolve_cascade")
    summary = _evolve(dest / "config.yaml", tmp_path / "run")
    assert summary.initial_score == pytest.approx(1 / 5)  # the stage-2 score, after stage 1 passed
    assert summary.best_score > summary.initial_score


def test_offline_run_with_numpy_evaluator_and_requirements(tmp_path: Path) -> None:
    dest = folder(tmp_path, "openevolve_numpy")
    spec = load_any(dest / "config.yaml")
    assert spec.sandbox.requirements == ["numpy>=1.20"] and missing_requirements(spec.sandbox.requirements) == []
    summary = _evolve(dest / "config.yaml", tmp_path / "run")
    assert summary.initial_score == pytest.approx(1 / 5)
    assert summary.best_score > summary.initial_score


def _diff_towards_five(messages: list[dict]) -> str:
    """Read the parent's constant from the prompt and move it one step towards 5."""
    text = "\n".join(m["content"] for m in messages)
    found = re.findall(r"return (-?\d+(?:\.\d+)?)", text)
    if not found:  # the client's reachability probe carries no program
        return "ok"
    old = found[0]
    new = float(old) + (1.0 if float(old) < 5 else -1.0)
    return f"Move towards 5.\n<<<<<<< SEARCH\n    return {old}\n=======\n    return {new}\n>>>>>>> REPLACE\n"


def _stored_text(run: Path) -> bytes:
    """Everything in a run folder, with SQLite cells decompressed, for secret scans."""
    chunks: list[bytes] = []
    for path in run.rglob("*"):
        if not path.is_file():
            continue
        chunks.append(path.read_bytes())
        if path.suffix == ".db":
            with sqlite3.connect(path) as conn:
                tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
                for table in tables:
                    for row in conn.execute(f"SELECT * FROM {table}"):  # noqa: S608 - names from the db
                        for cell in row:
                            raw = cell if isinstance(cell, bytes) else str(cell).encode()
                            try:
                                raw = zlib.decompress(raw)
                            except zlib.error:
                                pass
                            chunks.append(raw)
    return b"\n".join(chunks)


@dataclass
class LLMRun:
    summary: Any
    requests: list[dict]
    spec: TaskSpec
    run: Path


@pytest.fixture(scope="module")
def llm_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LLMRun]:
    """One evolution of the artifacts fixture against a real scripted OpenAI-compatible server.

    Only the endpoint is filled in; the model stays "scripted", as an OpenEvolve user would
    write it. The server demands the key that config.yaml names as ${AGENTOPT_OE_TEST_KEY}.
    """
    tmp_path = tmp_path_factory.mktemp("llm")
    with pytest.MonkeyPatch.context() as mp, ScriptedOpenAIServer(_diff_towards_five, api_key="sk-oe-test-key") as srv:
        mp.setenv("AGENTOPT_OE_TEST_KEY", "sk-oe-test-key")
        dest = folder(tmp_path, "openevolve_artifacts")
        config = yaml.safe_load((dest / "config.yaml").read_text())
        config["llm"]["api_base"] = srv.base_url
        # A weight-0 model with a literal key: never sampled, key never copied.
        config["llm"]["models"].append({"name": "other", "weight": 0, "api_key": LITERAL_KEY})
        write_config(dest, config)
        spec = load_any(dest / "config.yaml")
        summary = _evolve(dest / "config.yaml", tmp_path / "run")
        yield LLMRun(summary, srv.requests, spec, tmp_path / "run")


def test_llm_run_against_a_scripted_server_improves(llm_run: LLMRun) -> None:
    assert [m.name for m in llm_run.spec.llm.models] == ["openai/scripted"]
    summary = llm_run.summary
    assert summary.mutator.startswith("llm")
    assert summary.initial_score == pytest.approx(1 / 5)
    assert summary.best_score > summary.initial_score  # solve() moved from 1.0 towards 5
    requests = [r for r in llm_run.requests if len(r["messages"]) > 1]  # not the reachability probe
    assert len(requests) == 4 and all(r["model"] == "scripted" for r in requests)
    first = requests[0]
    assert first["temperature"] == 0.3 and first["max_tokens"] == 512
    assert first["messages"][0]["role"] == "system"
    assert first["messages"][0]["content"].startswith("You improve programs. Keep solve() fast.")


def test_artifacts_are_stored_and_become_feedback_in_the_next_prompt(llm_run: LLMRun) -> None:
    assert b"solve() returned 1.0; the target is 5" in _stored_text(llm_run.run)
    prompts = [r for r in llm_run.requests if len(r["messages"]) > 1]
    shown = "\n".join(m["content"] for r in prompts for m in r["messages"])
    assert "solve() returned 1.0; the target is 5" in shown


def test_api_keys_never_reach_the_run_folder(llm_run: LLMRun) -> None:
    stored = _stored_text(llm_run.run)
    assert b"sk-oe-test-key" not in stored and LITERAL_KEY.encode() not in stored
    assert "AGENTOPT_OE_TEST_KEY" in json.dumps(llm_run.spec.model_dump(mode="json"))  # only the name


def test_taskspec_roundtrip_of_translation_is_strict(tmp_path: Path) -> None:
    """The translated dict is a valid task.yaml on its own (no agentopt key invented)."""
    tr = translate(FIXTURES / "openevolve_full" / "config.yaml",
                   yaml.safe_load((FIXTURES / "openevolve_full" / "config.yaml").read_text()))
    TaskSpec.model_validate(tr.data)
    assert set(tr.data) <= set(TaskSpec.model_fields)


def test_cli_import_command(tmp_path: Path) -> None:
    dest = folder(tmp_path, "openevolve_dict")
    cmd = [sys.executable, "-m", "agentopt.cli", "import", "openevolve", str(dest)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "task.yaml" in out.stdout and (dest / "task.yaml").is_file()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert "Traceback" not in again.stderr
