"""Several objectives in task.yaml: the three forms, what metric/direction then mean (the
scalar score), one-line errors, the stored form a reopened run compares, the JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentopt.errors import TaskError
from agentopt.task import WEIGHTED_METRIC, Objective, json_schema, load_task

PROGRAM = "# EVOLVE-BLOCK-START\nx = 1\n# EVOLVE-BLOCK-END\n"
TWO = "[{metric: err, direction: minimize}, {metric: ops, direction: minimize}]"


def load(tmp_path: Path, objective: str) -> Objective:
    (tmp_path / "prog.py").write_text(PROGRAM)
    (tmp_path / "ev.py").write_text("def evaluate(p):\n    return {'err': 1.0, 'ops': 2.0}\n")
    task = tmp_path / "task.yaml"
    task.write_text(f"program: prog.py\nevaluator: ev.py\nobjective: {objective}\n")
    return load_task(task).objective


def test_list_form_primary_defaults_to_first(tmp_path: Path) -> None:
    obj = load(tmp_path, TWO)
    assert obj.is_multi and [m.metric for m in obj.objectives] == ["err", "ops"]
    assert (obj.metric, obj.direction) == ("err", "minimize")
    assert obj.scalarize({"err": 0.5, "ops": 9}) == 0.5


def test_mapping_form_with_primary_and_weights(tmp_path: Path) -> None:
    obj = load(tmp_path, "{metrics: " + TWO + ", primary: ops, if_missing: error}")
    assert (obj.metric, obj.direction) == ("ops", "minimize")
    weighted = load(tmp_path, "{metrics: [{metric: err, direction: minimize}, {metric: acc}], weights: {err: 2, acc: 1}}")
    assert (weighted.metric, weighted.direction) == (WEIGHTED_METRIC, "maximize")
    assert weighted.scalarize({"err": 0.25, "acc": 3.0}) == pytest.approx(3.0 - 0.5)
    assert "weights acc=1, err=2" in weighted.describe()


def test_single_objective_is_unchanged(tmp_path: Path) -> None:
    obj = load(tmp_path, "{metric: loss, direction: minimize}")
    assert not obj.is_multi and obj.objectives[0].metric == "loss"
    assert json.loads(obj.stored()) == {
        "metric": "loss", "direction": "minimize", "if_missing": "error", "aggregate": "worst",
        "selection": "best", "selection_top": 20,
    }  # fmt: skip
    one = load(tmp_path, "[{metric: loss, direction: minimize}]")  # a one-entry list is a single objective
    assert not one.is_multi and one.stored() == obj.stored()


def test_stored_objective_round_trips_and_compares(tmp_path: Path) -> None:
    obj = load(tmp_path, "{metrics: " + TWO + ", primary: ops}")
    again = Objective.model_validate_json(obj.stored())
    assert again.same_objectives(obj) and again.metric == "ops"
    assert not load(tmp_path, TWO).same_objectives(obj)  # other primary
    assert not load(tmp_path, "[{metric: err, direction: minimize}, {metric: ops}]").same_objectives(obj)


@pytest.mark.parametrize(
    ("objective", "expected"),
    [
        ("[]", "metrics: list at least one"),
        ("{metrics: []}", "metrics: list at least one"),
        ("[{metric: a}, {metric: a}]", "each metric once, repeated: a"),
        ("{metrics: " + TWO + ", primary: time}", "primary: unknown metric 'time' (objectives: err, ops)"),
        ("{metrics: " + TWO + ", weights: {time: 1}}", "weights: unknown metric 'time'"),
        ("{metrics: " + TWO + ", weights: {err: 1}, primary: err}", "either primary or weights"),
        ("{metrics: " + TWO + ", weights: {err: 0}}", "at least one non-zero weight"),
        ("{metric: err, metrics: " + TWO + ", primary: ops}", "either metric or metrics"),
        ("{primary: err}", "primary needs several objectives"),
        ("[{metric: a, direction: up}, {metric: b}]", "objective.metrics.0.direction"),
        ("{metrics: " + TWO + ", reference: {err: 1}}", "reference: give a value for every metric (missing 'ops')"),
        ("{metrics: [{metric: weighted_sum}, {metric: b}], weights: {b: 1}}", "the weighted score's own name"),
        ("[{metric: error, direction: minimize}, {metric: ops}]", "'error' cannot be an objective"),
    ],
)
def test_errors_are_one_line(tmp_path: Path, objective: str, expected: str) -> None:
    with pytest.raises(TaskError) as info:
        load(tmp_path, objective)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_json_schema_accepts_the_list_form() -> None:
    schema = json.loads(json_schema())
    forms = schema["properties"]["objective"]["anyOf"]
    assert {"$ref": "#/$defs/Objective"} in forms
    assert any(f.get("type") == "array" and f["items"] == {"$ref": "#/$defs/ObjectiveMetric"} for f in forms)
    assert {"metrics", "primary", "weights", "reference"} <= set(schema["$defs"]["Objective"]["properties"])


def _scored(objective: Objective, value: dict) -> object:
    from agentopt.evaluate import _from_job
    from agentopt.sandbox.base import JobResult

    return _from_job(JobResult(ok=True, value=value), objective, 0)


def test_every_objective_must_be_in_the_result() -> None:
    obj = Objective.model_validate([{"metric": "err", "direction": "minimize"}, {"metric": "ops", "direction": "minimize"}])
    ok = _scored(obj, {"err": 0.5, "ops": 3, "note": "x"})
    assert ok.score == 0.5 and ok.metrics["ops"] == 3
    missing = _scored(obj, {"err": 0.5, "time": 1})
    assert missing.score is None and missing.error == "evaluator returned no 'ops' (objective.metrics); it returned: 'err', 'time'"
    assert "non-finite" in _scored(obj, {"err": 0.5, "ops": float("nan")}).error
    assert _scored(obj, {"ops": 1}).error == "evaluator returned no 'err' (objective.metrics); it returned: 'ops'"
    assert "boolean for 'ops'" in _scored(obj, {"err": 0.5, "ops": True}).error
    lenient = obj.model_copy(update={"if_missing": "mean"})
    assert _scored(lenient, {"err": 1.0, "time": 3.0}).metrics["ops"] == 2.0  # OpenEvolve's mean, per metric


def test_weighted_score_and_settings_aggregate_each_metric_in_its_direction() -> None:
    from agentopt.evaluate import EvalResult, combine_settings

    obj = Objective.model_validate({"metrics": [{"metric": "err", "direction": "minimize"}, {"metric": "acc"}],
                                    "weights": {"err": 1, "acc": 2}})  # fmt: skip
    scored = _scored(obj, {"err": 0.5, "acc": 0.75})
    assert scored.score == pytest.approx(1.0) and scored.metrics[WEIGHTED_METRIC] == pytest.approx(1.0)
    per_setting = [
        ("a", EvalResult(metrics={"err": 0.1, "acc": 0.9}, score=1.7)),
        ("b", EvalResult(metrics={"err": 0.3, "acc": 0.8}, score=1.3)),
    ]
    combined = combine_settings(per_setting, obj)  # worst: the largest err, the smallest acc
    assert combined.metrics["err"] == 0.3 and combined.metrics["acc"] == 0.8
    assert combined.score == pytest.approx(2 * 0.8 - 0.3) and combined.metrics["acc@a"] == 0.9
