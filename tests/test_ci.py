"""`agentopt ci`: baseline + tolerance + exit code, JUnit XML and the GitHub job summary."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from xml.etree import ElementTree as ET

from agentopt.ci import Baseline, bootstrap_delta_ci, compare

PROGRAM = textwrap.dedent(
    """\
    # EVOLVE-BLOCK-START
    def solve():
        return VALUE
    # EVOLVE-BLOCK-END
    """
)
EVALUATOR = textwrap.dedent(
    """\
    from agentopt_guest import call_candidate

    def evaluate(program_path):
        return {"score": float(call_candidate(program_path, "solve", timeout=5))}
    """
)


def base(samples: list[float], direction: str = "maximize") -> Baseline:
    return Baseline(task="t", metric="score", direction=direction, samples=samples)


def test_deterministic_metrics_compare_exactly() -> None:
    assert compare([1.0], base([1.0])).verdict == "pass"
    assert compare([0.9], base([1.0])).verdict == "regression"
    assert compare([1.1], base([1.0])).verdict == "improved"
    assert compare([0.95], base([1.0]), tolerance=0.1).verdict == "pass"
    assert compare([0.95], base([1.0]), rel_tolerance=0.1).verdict == "pass"
    # minimize: lower is better
    assert compare([0.9], base([1.0], "minimize")).verdict == "improved"
    assert compare([1.2], base([1.0], "minimize")).verdict == "regression"


def test_noisy_metrics_need_the_whole_interval_below() -> None:
    noisy_base = [1.00, 1.05, 0.95, 1.02, 0.98]
    overlapping = [0.97, 1.03, 0.93, 1.00, 0.99]
    assert compare(overlapping, base(noisy_base)).verdict == "pass"
    clearly_worse = [0.80, 0.82, 0.79, 0.81, 0.80]
    result = compare(clearly_worse, base(noisy_base))
    assert result.verdict == "regression" and result.ci_high < 0
    delta, low, high = bootstrap_delta_ci(overlapping, noisy_base, seed=0)
    assert (delta, low, high) == bootstrap_delta_ci(overlapping, noisy_base, seed=0)  # reproducible
    assert low <= delta <= high


def make_task(tmp_path: Path, value: float) -> Path:
    (tmp_path / "program.py").write_text(PROGRAM.replace("VALUE", repr(value)))
    (tmp_path / "evaluator.py").write_text(EVALUATOR)
    task = tmp_path / "task.yaml"
    task.write_text("name: gate\nprogram: program.py\nevaluator: evaluator.py\nsandbox: {timeout_s: 20}\n")
    return task


def run_ci(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {**os.environ, **(env or {})}
    full_env.pop("GITHUB_STEP_SUMMARY", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "agentopt.cli", "ci", *args], capture_output=True, text=True, timeout=120, env=full_env
    )


def test_ci_cli_baseline_pass_and_regression(tmp_path: Path) -> None:
    task = make_task(tmp_path, 2.0)
    baseline = tmp_path / "baseline.json"
    missing = run_ci(str(task), "--baseline", str(baseline))
    assert missing.returncode == 2 and "--update-baseline" in missing.stderr

    written = run_ci(str(task), "--baseline", str(baseline), "--update-baseline", "-r", "2")
    assert written.returncode == 0, written.stderr
    assert Baseline.model_validate_json(baseline.read_text()).samples == [2.0, 2.0]

    summary = tmp_path / "summary.md"
    junit = tmp_path / "junit.xml"
    ok = run_ci(str(task), "--baseline", str(baseline), "-r", "1", "--junit", str(junit),
                env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert ok.returncode == 0, ok.stderr
    assert "PASS" in ok.stdout
    assert "agentopt ci: gate" in summary.read_text()
    assert ET.parse(junit).getroot().get("failures") == "0"

    make_task(tmp_path, 1.5)  # the program got worse
    bad = run_ci(str(task), "--baseline", str(baseline), "-r", "1", "--junit", str(junit))
    assert bad.returncode == 1
    lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "REGRESSION" in lines[0]
    root = ET.parse(junit).getroot()
    assert root.get("failures") == "1" and root.find("testcase/failure") is not None

    tolerant = run_ci(str(task), "--baseline", str(baseline), "-r", "1", "--tolerance", "0.6")
    assert tolerant.returncode == 0


def test_ci_failed_program_is_a_failure(tmp_path: Path) -> None:
    task = make_task(tmp_path, 2.0)
    baseline = tmp_path / "b.json"
    assert run_ci(str(task), "--baseline", str(baseline), "--update-baseline", "-r", "1").returncode == 0
    (tmp_path / "program.py").write_text("raise SystemExit('broken')\n")
    out = run_ci(str(task), "--baseline", str(baseline), "-r", "1")
    assert out.returncode == 1 and "FAILED" in out.stderr


def test_pytest_fixture_and_assert_meets(tmp_path: Path, agentopt_score) -> None:
    from agentopt.testing import assert_meets

    task = make_task(tmp_path, 3.0)
    assert agentopt_score(task) == 3.0
    assert assert_meets(task, at_least=2.5) == 3.0
    try:
        assert_meets(task, at_least=4.0)
    except AssertionError as err:
        assert "below the bar" in str(err)
    else:  # pragma: no cover
        raise AssertionError("assert_meets should have failed")
