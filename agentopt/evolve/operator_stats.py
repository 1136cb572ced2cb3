"""Per-operator accounting: which kinds of move produce children that pay.

Every child records how it was made in ``Program.mutation``: ``operator`` (a short name
set by the proposer, e.g. ``perturb`` or ``extend_horner``) and, when its
constants were tuned before judging, ``tuned = {"evaluations", "before", "after"}``.
Children from before operators were named carry only ``kind`` (symbolic / diff / rewrite)
and a ``description``; :func:`operator_name` derives a name from those.

The store keeps the name and the tuning numbers in plain columns, so the table below is
one SQL aggregate (``ProgramDB.operator_counts``), cheap at 100k programs; this module
turns those rows into :class:`OperatorStats` and into the text the summary, the terminal
and the HTML report show.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import BaseModel

__all__ = ["OperatorStats", "operator_name", "operator_table", "tuning_columns"]

INITIAL = "initial"
UNKNOWN = "unknown"
# Symbolic-mutator descriptions (agentopt.evolve.symbolic) -> operator, for children stored
# before proposers set mutation["operator"] (same names as the proposers use). A multi-file
# description starts with "path: ".
_SYMBOLIC_DESCRIPTIONS = (
    (re.compile(r"(?:^|: )(?:scaled literal|perturbed \d+ literals)"), "perturb"),
    (re.compile(r"(?:^|: )copied literal"), "share_constant"),
    (re.compile(r"(?:^|: )swapped operator "), "swap_operator"),
    (re.compile(r"(?:^|: )swapped operands"), "swap_operands"),
    (re.compile(r"(?:^|: )duplicated statement"), "duplicate_statement"),
    (re.compile(r"(?:^|: )deleted statement"), "delete_statement"),
    (re.compile(r"(?:^|: )changed comparison"), "change_comparison"),
)
_NAME_LIMIT = 64


def operator_name(mutation: dict[str, Any], *, has_parent: bool = True) -> str:
    """Short name of the move that made a program: ``mutation["operator"]`` when set, else
    derived from the symbolic mutator's description, else the mutation kind."""
    if not has_parent:
        return INITIAL
    explicit = mutation.get("operator")
    if isinstance(explicit, str) and explicit.strip():
        return " ".join(explicit.split())[:_NAME_LIMIT]
    kind = str(mutation.get("kind") or UNKNOWN)
    if kind == "symbolic":
        description = str(mutation.get("description", ""))
        for pattern, name in _SYMBOLIC_DESCRIPTIONS:
            if pattern.search(description):
                return name
    return " ".join(kind.split())[:_NAME_LIMIT] or UNKNOWN


def tuning_columns(mutation: dict[str, Any], maximize: bool) -> tuple[int | None, float | None]:
    """``(evaluations, gain)`` from ``mutation["tuned"]``: gain > 0 when tuning improved the
    score (in the objective's direction); None where the child was not tuned (no record, or
    a record of zero evaluations) or a number is missing or not finite."""
    tuned = mutation.get("tuned")
    if not isinstance(tuned, dict):
        return None, None
    evaluations = _number(tuned.get("evaluations"))
    if not evaluations:
        return None, None
    before, after = _number(tuned.get("before")), _number(tuned.get("after"))
    gain = None if before is None or after is None else (after - before if maximize else before - after)
    return (None if evaluations is None else int(evaluations)), gain


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


class OperatorStats(BaseModel):
    """Outcome counts of the children one operator produced (the initial program excluded)."""

    operator: str
    children: int = 0
    valid: int = 0  # evaluated without error, with a score
    improved: int = 0  # better than their own parent (or valid where the parent failed)
    new_best: int = 0  # better than every program stored before them
    reused: int = 0  # served by the equivalence cache: a repeat of an evaluated program
    tuned: int = 0  # children whose constants were tuned before they were judged
    tune_evaluations: int = 0
    tune_improved: int = 0  # tuned children that scored better after tuning than before

    @classmethod
    def from_counts(cls, operator: str, counts: list[int]) -> OperatorStats:
        """From the counts in field order (``children`` .. ``tune_improved``)."""
        names = [f for f in cls.model_fields if f != "operator"]
        return cls(operator=operator, **dict(zip(names, counts, strict=True)))

    @property
    def improve_rate(self) -> float:
        return self.improved / self.children if self.children else 0.0


def operator_table(stats: list[OperatorStats]) -> tuple[list[str], list[list[str]]]:
    """Header and rows for the summary, the terminal and the HTML report. Tuning columns
    appear only when some child was tuned."""
    tuned = any(s.tuned for s in stats)
    header = ["operator", "children", "valid", "improved", "new best", "repeats"]
    if tuned:
        header += ["tuned", "tune evals", "tune helped"]
    rows: list[list[str]] = []
    for s in stats:
        row = [
            s.operator,
            str(s.children),
            str(s.valid),
            f"{s.improved} ({s.improve_rate:.0%})",
            str(s.new_best),
            str(s.reused),
        ]
        if tuned:
            row += [str(s.tuned), str(s.tune_evaluations), str(s.tune_improved)]
        rows.append(row)
    return header, rows
