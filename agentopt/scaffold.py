"""`agentopt init DIR`: a minimal, working task folder a user edits into their own task."""

from __future__ import annotations

from pathlib import Path

from agentopt.errors import AgentoptError

TASK_YAML = """\
# Editor completion: agentopt schema > task.schema.json, then point yaml-language-server at it.
name: {name}
description: >
  Make `solve` return a number as close to 42 as possible.
program: initial_program.py
evaluator: evaluator.py
objective: {{metric: score, direction: maximize}}
sandbox: {{timeout_s: 10, memory_mb: 1024}}
search: {{iterations: 50, seed: 0, parallel_evaluations: 2}}
# llm:
#   models: [{{name: openai/gpt-4o-mini, api_key_env: OPENAI_API_KEY}}]
"""

PROGRAM = """\
\"\"\"Initial program. Only the code between the EVOLVE-BLOCK markers is changed by agentopt.\"\"\"

# EVOLVE-BLOCK-START
def solve() -> float:
    return 3.0 * 7.0
# EVOLVE-BLOCK-END
"""

EVALUATOR = """\
\"\"\"Evaluator: runs inside the sandbox; calls the candidate in a separate process.

call_candidate forks a fresh child per call from a ready forkserver (milliseconds, no new Python), so
calling it many times is fine; for many calls into ONE child (timing, warm caches) use
``with CandidateProcess(program_path) as proc: proc.call("solve", timeout=1)``.
\"\"\"

from agentopt_guest import CandidateError, call_candidate


def evaluate(program_path: str) -> dict:
    try:
        value = float(call_candidate(program_path, "solve", timeout=5))
    except CandidateError as err:
        return {"score": 0.0, "error": str(err)}
    error = abs(value - 42.0)
    return {"score": 1.0 / (1.0 + error), "value": value, "feedback": f"solve() returned {value!r}; target 42"}
"""


def write_task_skeleton(directory: Path) -> Path:
    """Create DIR/{task.yaml, initial_program.py, evaluator.py}; never overwrite files."""
    directory = Path(directory)
    files = {
        "task.yaml": TASK_YAML.format(name=directory.resolve().name or "task"),
        "initial_program.py": PROGRAM,
        "evaluator.py": EVALUATOR,
    }
    existing = [name for name in files if (directory / name).exists()]
    if existing:
        raise AgentoptError(f"{directory}: {', '.join(existing)} already exist; choose an empty folder")
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory / "task.yaml"
