"""Ray backend, for real: one small local Ray (2 CPUs, no dashboard) shared by this module.

Skips with the reason printed when ray is not installed. Each task runs the local process
sandbox on the (local) node, so these tests check the Ray plumbing: file shipping, resource
requests, results, timeouts, errors; the isolation itself is covered by the hostile suite.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentopt.errors import SandboxError
from agentopt.sandbox.base import SandboxJob
from agentopt.sandbox.ray_backend import unavailable_reason

_REASON = unavailable_reason()
if _REASON:
    print(f"skipping ray sandbox tests: {_REASON}")
pytestmark = pytest.mark.skipif(_REASON is not None, reason=f"ray unavailable: {_REASON}")


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def sandbox(ray_session: None) -> Iterator[object]:
    from agentopt.sandbox.ray_backend import RaySandbox

    sb = RaySandbox(grace_s=3.0)
    yield sb
    asyncio.run(sb.close())


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ray-guest")
    data = d / "data"
    data.mkdir()
    (data / "table.txt").write_text("7\n")
    (d / "prog.py").write_text("VALUE = 6\n")
    (d / "ev.py").write_text(textwrap.dedent("""
        import os, runpy
        def evaluate(program_path):
            here = os.path.dirname(program_path)
            factor = int(open(os.path.join(here, "data", "table.txt")).read())
            value = runpy.run_path(program_path)["VALUE"] * factor
            return {"score": float(value), "secret_seen": float("OPENAI_API_KEY" in os.environ),
                    "cuda": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    """))
    (d / "ev_loop.py").write_text("def evaluate(p):\n    while True:\n        pass\n")
    return {"prog": d / "prog.py", "ev": d / "ev.py", "loop": d / "ev_loop.py", "data": data}


def _job(files: dict[str, Path], evaluator: str = "ev", **kw: object) -> SandboxJob:
    kw.setdefault("timeout_s", 20.0)
    kw.setdefault("extra_files", [files["data"]])
    return SandboxJob(evaluator_path=files[evaluator], program_path=files["prog"], **kw)  # type: ignore[arg-type]


def test_result_with_shipped_files_and_scrubbed_env(sandbox, files, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("OPENAI_API_KEY", "sk-" + secrets.token_hex(8))  # after ray.init: driver only
    r = asyncio.run(sandbox.run(_job(files)))
    assert r.ok, r
    assert r.value == {"score": 42.0, "secret_seen": 0.0, "cuda": ""}
    assert "ray_task" in r.isolation and "clean_env" in r.isolation


def test_concurrent_jobs(sandbox, files) -> None:  # noqa: ANN001
    async def many() -> list:
        return await asyncio.gather(*(sandbox.run(_job(files)) for _ in range(3)))

    results = asyncio.run(many())
    assert [r.value["score"] for r in results] == [42.0] * 3


def test_timeout_inside_task(sandbox, files) -> None:  # noqa: ANN001
    r = asyncio.run(sandbox.run(_job(files, "loop", timeout_s=1.0)))
    assert not r.ok and r.error_kind == "timeout", r


def test_resource_request_is_honoured(sandbox, files) -> None:  # noqa: ANN001
    # 3 CPUs can never be granted on this 2-CPU Ray: the task must stay unscheduled until the
    # driver's deadline (timeout + grace) cancels it. A backend ignoring cpus would return 42.
    r = asyncio.run(sandbox.run(_job(files, cpus=3, timeout_s=1.0)))
    assert not r.ok and r.error_kind == "timeout" and "did not finish" in (r.error or ""), r


def test_missing_input_is_a_sandbox_error(sandbox, files, tmp_path) -> None:  # noqa: ANN001
    job = SandboxJob(evaluator_path=files["ev"], program_path=tmp_path / "nope.py")
    with pytest.raises(SandboxError, match="not found"):
        asyncio.run(sandbox.run(job))


def test_factory_makes_ray_sandbox(ray_session) -> None:  # noqa: ANN001
    from agentopt.sandbox.factory import make_sandbox
    from agentopt.sandbox.ray_backend import RaySandbox
    from agentopt.task import SandboxSpec

    sb = make_sandbox(SandboxSpec(kind="ray", ray_address=None))
    assert isinstance(sb, RaySandbox)


def test_missing_ray_is_one_line_install_hint(monkeypatch) -> None:  # noqa: ANN001
    from agentopt.sandbox.ray_backend import RaySandbox

    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(SandboxError, match=r"pip install 'agentopt\[ray\]'"):
        RaySandbox()
