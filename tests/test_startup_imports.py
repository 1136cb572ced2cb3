"""`agentopt evolve` start-up stays lean: loading a plain task.yaml and importing the engine must not
pull in modules only other paths need (each costs 0.05-0.3 s of every start on a 2-core box).
A subprocess, so what this test process already imported does not count."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HEAVY = ("networkx", "numpy", "litellm", "openai", "packaging", "agentopt.optim", "agentopt.targets.trace_workflow")


def test_evolve_start_imports_nothing_heavy(tmp_path):
    (tmp_path / "program.py").write_text("x = 1\n")
    (tmp_path / "evaluator.py").write_text("def evaluate(path):\n    return {'score': 1.0}\n")
    (tmp_path / "task.yaml").write_text(
        "program: program.py\nevaluator: evaluator.py\n"
        "llm:\n  models:\n    - {name: openai/m, api_base: 'http://127.0.0.1:9/v1'}\n"
    )
    code = (
        "import sys\n"
        "import agentopt.cli\n"
        "from agentopt.evolve.api import run_async\n"
        "from agentopt.targets import load_any\n"
        f"spec = load_any({str(tmp_path / 'task.yaml')!r})\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"imported at start-up: {out.stdout.strip()}"
