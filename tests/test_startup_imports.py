"""`agentopt evolve` start-up stays lean: loading a plain task.yaml and importing the engine must not
pull in modules only other paths need (each costs 0.05-0.3 s of every start on a 2-core box).
A subprocess, so what this test process already imported does not count."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HEAVY = (
    "networkx", "numpy", "litellm", "openai", "packaging", "agentopt.optim", "agentopt.targets.trace_workflow",
    "rich.progress",  # the live display, only when it is shown (not with --quiet)
    "urllib.request", "http.client",  # only the local model server's health check uses them
)


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
        "import agentopt.cli_progress\n"
        "from agentopt.evolve.api import run_async\n"
        "from agentopt.targets import load_any\n"
        f"spec = load_any({str(tmp_path / 'task.yaml')!r})\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"imported at start-up: {out.stdout.strip()}"


def test_single_objective_store_needs_no_numpy(tmp_path):
    """A plain run's store work (adds with the default feature dimensions, complexity and
    diversity; sampling; best) stays numpy-free, so a short run never pays numpy's import.
    Only several objectives (pareto fronts) bring numpy in."""
    code = (
        "import random, sys\n"
        "from pathlib import Path\n"
        "from agentopt.evolve.db import Program, ProgramDB, make_program_id\n"
        "from agentopt.task import Objective, SearchSpec\n"
        f"db = ProgramDB.open(Path({str(tmp_path / 'p.db')!r}), objective=Objective(), search=SearchSpec(num_islands=2))\n"
        "for i in range(40):\n"
        "    c = f'def f(x):\\n    return x * {i} + {i % 7}\\n' + '# c\\n' * (i % 5)\n"
        "    db.add(Program(id=make_program_id(0, i, str(i)), code=c, iteration=i, island=i % 2,\n"
        "                   score=float(i % 9), complexity=float(len(c))))\n"
        "rng = random.Random(0)\n"
        "db.sample(rng, island=0, num_top=2, num_diverse=2)\n"
        "assert db.best() is not None\n"
        "print('numpy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False", "a single-objective store imported numpy"


def _gc_state_at_exit(args: list[str], cwd: Path) -> str:
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('gc', gc.isenabled(), gc.get_freeze_count() > 0))\n"
        "from agentopt.cli import main\n"
        f"sys.argv = ['agentopt', *{args!r}]\n"
        "main()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_cli_collector_policy(tmp_path):
    """The console script pauses the collector while it starts up, resumes it for every command
    (an evolve run after freezing the start-up heap) and freezes everything on the way out, so
    the interpreter's exit collections skip it (tens of ms per command); atexit handlers still run."""
    (tmp_path / "program.py").write_text("x = 1\n")
    (tmp_path / "evaluator.py").write_text("def evaluate(path):\n    return {'score': 1.0}\n")
    (tmp_path / "task.yaml").write_text("program: program.py\nevaluator: evaluator.py\nsearch: {mutator: symbolic}\n")
    assert _gc_state_at_exit(["--version"], tmp_path) == "gc False True"  # exits before any command
    assert _gc_state_at_exit(["validate", str(tmp_path / "task.yaml")], tmp_path) == "gc True True"
    evolve = ["evolve", str(tmp_path / "task.yaml"), "-n", "0", "-q", "-o", str(tmp_path / "out")]
    assert _gc_state_at_exit(evolve, tmp_path) == "gc True True"
    assert (tmp_path / "out" / "summary.json").is_file()
