"""The seams issue #13 introduced: GpuRequest, load_any vs load_task, the optimizer table,
the Proposer protocol, the docker guest scripts as files, and the old import paths."""

from __future__ import annotations

import ast
import importlib
import sys
import typing
import warnings
from pathlib import Path

import pytest

from agentopt.errors import AgentoptError, TaskError
from agentopt.task import GpuRequest, load_task

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.mark.parametrize(
    ("value", "text", "number"),
    [
        (None, "none", 0), (0, "none", 0), ([], "none", 0), ("", "none", 0), ("none", "none", 0), ("0", "none", 0),
        (-1, "none", 0), (2, "2", 2), ("3", "3", 3), (" all ", "all", 7), (["0", "1", "3"], "0,1,3", 3),
        ("0,1", "0,1", 2), ("device=2,3", "2,3", 2),
    ],
)
def test_gpu_request_parses_every_spelling_once(value: object, text: str, number: int) -> None:
    request = GpuRequest.parse(value)  # type: ignore[arg-type]
    assert (str(request), request.number(all_as=7), request.wanted) == (text, number, number > 0)
    assert GpuRequest.parse(request) is request


def test_each_backend_translates_the_same_request() -> None:
    from docker.types import DeviceRequest

    from agentopt.sandbox.docker_backend import device_requests
    from agentopt.sandbox.local import _gpu_env

    assert device_requests(None) is None and device_requests("0") is None
    assert device_requests("all") == [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    assert device_requests(2) == [DeviceRequest(count=2, capabilities=[["gpu"]])]
    assert device_requests("1,3") == [DeviceRequest(device_ids=["1", "3"], capabilities=[["gpu"]])]
    assert _gpu_env("0,2") == {"CUDA_VISIBLE_DEVICES": "0,2"} and _gpu_env(0) == {"CUDA_VISIBLE_DEVICES": ""}


def test_load_task_is_native_only_and_load_any_translates(tmp_path: Path) -> None:
    from agentopt.targets import load_any

    config = FIXTURES / "openevolve_full" / "config.yaml"
    with pytest.raises(TaskError, match="missing required key 'program'.*agentopt.targets.load_any"):
        load_task(config)
    assert load_any(config).program.name == "initial_program.py"


def test_the_optimizer_table_is_the_config_schema() -> None:
    from agentopt.optim import OPTIMIZERS, Optimizer
    from agentopt.optim.config import OptimizerSpec

    assert set(typing.get_args(OptimizerSpec.model_fields["kind"].annotation)) == set(OPTIMIZERS)
    for kind, cls in OPTIMIZERS.items():
        assert cls.kind == kind and issubclass(cls, Optimizer)
        assert cls.for_run.__func__ is not Optimizer.for_run.__func__ and cls.propose is not Optimizer.propose, kind


def test_both_proposers_satisfy_every_method_of_the_protocol() -> None:
    from agentopt.evolve.proposal import Proposer
    from agentopt.evolve.proposers import LLMProposer, SymbolicProposer

    wanted = {n for n, v in vars(Proposer).items() if callable(v) and not n.startswith("_")}
    assert wanted >= {"propose", "observe", "state_items", "meta_prompt_stats", "aclose"}
    for cls in (LLMProposer, SymbolicProposer):
        assert wanted <= set(dir(cls)), (cls.__name__, wanted - set(dir(cls)))


@pytest.mark.parametrize("name", ["supervisor.py", "reaper.py", "cleanup.py", "launcher.py"])
def test_docker_guest_scripts_are_files_that_parse(name: str) -> None:
    from agentopt.sandbox.docker_backend import _script

    tree = ast.parse(_script(name))
    assert not any(isinstance(n, ast.Import | ast.ImportFrom) and "agentopt" in ast.unparse(n) for n in ast.walk(tree))


def test_every_user_facing_error_is_an_agentopt_error() -> None:
    from agentopt.evolve.symbolic import SymbolicMutationError
    from agentopt.targets.param_blocks import CandidateFormatError
    from agentopt.targets.trace_guest import WorkflowSetupError

    for cls in (SymbolicMutationError, CandidateFormatError, WorkflowSetupError):
        assert issubclass(cls, AgentoptError)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("agentopt.compat.openevolve", "agentopt.targets.openevolve"),
        ("agentopt.trace.evolve_target", "agentopt.targets.trace_workflow"),
        ("agentopt.trace.evolve_guest", "agentopt.targets.trace_guest"),
        ("agentopt.trace.param_blocks", "agentopt.targets.param_blocks"),
        ("agentopt.evolve.blocks", "agentopt.blocks"),
    ],
)
def test_old_import_paths_warn_and_are_the_new_module(old: str, new: str) -> None:
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught)
