"""Evaluator for cap_set: the largest set of vectors in F_3^n with no three on a line.

Guest side: stdlib only (no numpy needed), and the candidate is never imported here: its
``build_cap_set(n)`` runs in a child process through ``agentopt_guest.call_candidate`` and
only plain lists come back.

Validity is decided exactly, in integers: every vector has n entries, each the int 0, 1 or
2; no vector repeats; and no three distinct vectors x, y, z satisfy x + y + z = 0 (mod 3)
coordinate-wise (in F_3^n that is exactly "x, y, z lie on one line"). The check looks up,
for every pair x, y, the unique third point -(x + y) of their line in a set: O(k^2) for a
cap of k vectors.

score = the number of vectors (never a claimed size). Invalid -> score 0 + error.
``n`` is 4 unless the sandbox environment sets ``CAPSET_N`` (1..8); ``ratio_to_anchor``
compares with the published anchor for that n (see ANCHORS and the task README).
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from typing import Any

from agentopt_guest import CandidateError, call_candidate

DEFAULT_N = 4
CALL_TIMEOUT_S = 10.0
# Largest known caps in AG(n, 3): n <= 6 proven optimal (Pellegrino 1970 for n = 4; Edel,
# Ferret, Landjev and Storme 2002 for n = 5; Potechin 2008 for n = 6); n = 7 is Edel's lower
# bound and n = 8 FunSearch's (Romera-Paredes et al., Nature 2024).
ANCHORS = {1: 2, 2: 4, 3: 9, 4: 20, 5: 45, 6: 112, 7: 236, 8: 512}
PROVEN = {1, 2, 3, 4, 5, 6}


class InvalidCap(Exception):
    """The returned object is not a cap set; the message is shown to the user and the LLM."""


def dimension() -> int:
    """n from ``CAPSET_N`` (set it under ``sandbox.env`` in task.yaml), default 4."""
    raw = os.environ.get("CAPSET_N", str(DEFAULT_N)).strip()
    if not raw.isdigit() or int(raw) not in ANCHORS:
        raise ValueError(f"CAPSET_N must be one of {sorted(ANCHORS)}, got {raw!r}")
    return int(raw)


def parse_cap(value: Any, n: int) -> list[tuple[int, ...]]:
    """Shape check of build_cap_set(n)'s plain return value: distinct length-n vectors over {0,1,2}."""
    if not isinstance(value, list):
        raise InvalidCap("build_cap_set(n) must return a list of vectors")
    if len(value) > 3**n:
        raise InvalidCap(f"{len(value)} vectors, but F_3^{n} has only {3**n}")
    cap: list[tuple[int, ...]] = []
    seen: dict[tuple[int, ...], int] = {}
    for i, raw in enumerate(value):
        if not isinstance(raw, list) or len(raw) != n:
            raise InvalidCap(f"vector {i} must be a list of {n} entries, got {raw!r:.60}")
        if not all(type(x) is int and 0 <= x <= 2 for x in raw):
            raise InvalidCap(f"vector {i} = {raw!r:.60} has an entry that is not the int 0, 1 or 2")
        v = tuple(raw)
        if v in seen:
            raise InvalidCap(f"vector {i} = {list(v)} repeats vector {seen[v]}")
        seen[v] = i
        cap.append(v)
    return cap


def third_point(x: tuple[int, ...], y: tuple[int, ...]) -> tuple[int, ...]:
    """The third point of the line through x and y in F_3^n: z = -(x + y) mod 3."""
    return tuple((-a - b) % 3 for a, b in zip(x, y, strict=True))


def check_cap(cap: list[tuple[int, ...]]) -> None:
    """Raise InvalidCap naming the first three vectors found on one line."""
    members = set(cap)
    for i, x in enumerate(cap):
        for y in cap[i + 1 :]:
            z = third_point(x, y)
            if z in members:  # z differs from x and y whenever x != y
                raise InvalidCap(f"vectors {list(x)}, {list(y)} and {list(z)} lie on one line (they sum to 0 mod 3)")


def addable(cap: list[tuple[int, ...]], n: int) -> list[tuple[int, ...]]:
    """Vectors that could still join the cap (completing no line): empty for a maximal cap."""
    blocked = set(cap)
    for i, x in enumerate(cap):
        for y in cap[i + 1 :]:
            blocked.add(third_point(x, y))
    return [v for v in itertools.product(range(3), repeat=n) if v not in blocked]


def restart_score(value):
    """Judge for best-of-k restarts (the ``best_of_k`` operator copies this into the program).

    The size of ``value`` when it is a cap set, else -1: the same order as ``evaluate`` gives
    its results, computed from the return value alone. Self-contained on purpose (no module
    globals, plain Python): it runs inside the candidate, once per restart.
    """
    try:
        cap = [tuple(v) for v in value]
        members = set(cap)
        if len(members) != len(cap):
            return -1
        for i, x in enumerate(cap):
            for y in cap[i + 1 :]:
                if tuple((-a - b) % 3 for a, b in zip(x, y, strict=True)) in members:
                    return -1
    except (TypeError, ValueError):  # not vectors, or vectors of different lengths
        return -1
    return len(cap)


def _invalid(reason: str) -> dict[str, Any]:
    return {"score": 0.0, "error": reason, "feedback": f"invalid cap set: {reason}"}


def evaluate(program_path: str) -> dict[str, Any]:
    """Run build_cap_set(n) in a child process, validate the cap exactly, score its size."""
    n = dimension()
    try:
        value = call_candidate(program_path, "build_cap_set", args=(n,), timeout=CALL_TIMEOUT_S)
    except CandidateError as err:
        return _invalid(f"running build_cap_set({n}) failed: {err}")
    try:
        cap = parse_cap(value, n)
        check_cap(cap)
    except InvalidCap as err:
        return _invalid(str(err))
    size = len(cap)
    anchor = ANCHORS[n]
    free = addable(cap, n)
    weights = Counter(sum(1 for x in v if x) for v in cap)
    known = "the proven maximum" if n in PROVEN else "the best known"
    feedback = [
        f"valid cap set of {size} vectors in F_3^{n}; {known} is {anchor} (ratio {size / anchor:.3f}).",
        (
            f"not maximal: {len(free)} vectors could still be added without completing a line, e.g. {list(free[0])}."
            if free
            else "maximal: every other vector completes a line with two of these (a larger cap needs another order)."
        ),
        "vectors per number of non-zero coordinates: "
        + ", ".join(f"{w}: {weights[w]}" for w in range(n + 1))
        + ".",
    ]
    return {
        "score": float(size),
        "size": size,
        "n": n,
        "anchor": anchor,
        "ratio_to_anchor": size / anchor,
        "addable": len(free),
        "feedback": "\n".join(feedback),
        "artifacts": {"cap": "\n".join("".join(map(str, v)) for v in cap)},
    }
