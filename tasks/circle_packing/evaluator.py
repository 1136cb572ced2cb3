"""Evaluator for circle_packing: 26 circles in the unit square, maximize the sum of radii.

Guest side: stdlib + numpy only, and the candidate is never imported here: its
``construct_packing()`` runs in a child process through ``agentopt_guest.call_candidate``
and only plain lists come back.

Validity is decided *exactly*: every coordinate is converted to a ``fractions.Fraction``
(floats are dyadic rationals, so this is lossless) and the constraints are checked in
rational arithmetic, with one stated absolute tolerance ``TOL = 1e-12`` (so radii computed
as ``d - r_j`` in floating point are not rejected for a last-bit rounding error):

* exactly 26 circles, all numbers finite, every radius > 0;
* inside the square:  r - TOL <= x <= 1 - r + TOL  (same for y);
* no overlap:  |c_i - c_j| >= r_i + r_j - TOL, checked as squared distances.

score = sum of the radii as returned (never a claimed total). Invalid → score 0 + error.
``ratio_to_alphaevolve`` = score / 2.635 (AlphaEvolve's reported 26-circle result).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
from agentopt_guest import CandidateError, call_candidate

N_CIRCLES = 26
TOL = 1e-12
ALPHAEVOLVE_SUM = 2.635
CALL_TIMEOUT_S = 5.0
_GAP_GRID = 101  # sample points per side when looking for the largest free spot


class InvalidPacking(Exception):
    """The packing breaks a rule; the message is shown to the user and the LLM."""


def _as_float(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPacking(f"{what} is not a number: {value!r:.40}")
    f = float(value)
    if not math.isfinite(f):
        raise InvalidPacking(f"{what} is not finite: {f!r}")
    return f


def parse_packing(value: Any) -> tuple[list[tuple[float, float]], list[float]]:
    """Shape check of construct_packing()'s plain return value."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise InvalidPacking("construct_packing() must return (centers, radii)")
    raw_centers, raw_radii = value
    if not isinstance(raw_centers, list | tuple) or not isinstance(raw_radii, list | tuple):
        raise InvalidPacking("centers and radii must be lists")
    if len(raw_centers) != N_CIRCLES or len(raw_radii) != N_CIRCLES:
        raise InvalidPacking(
            f"expected exactly {N_CIRCLES} centers and {N_CIRCLES} radii, got {len(raw_centers)} and {len(raw_radii)}"
        )
    centers: list[tuple[float, float]] = []
    for i, c in enumerate(raw_centers):
        if not isinstance(c, list | tuple) or len(c) != 2:
            raise InvalidPacking(f"center {i} must be a pair [x, y]")
        centers.append((_as_float(c[0], f"center {i} x"), _as_float(c[1], f"center {i} y")))
    radii = [_as_float(r, f"radius {i}") for i, r in enumerate(raw_radii)]
    return centers, radii


def check_packing(centers: list[tuple[float, float]], radii: list[float]) -> int:
    """Raise InvalidPacking on the first violated constraint; return the number of tight contacts.

    Exact rational arithmetic: no floating-point rounding can let an overlap through.
    """
    tol = Fraction(TOL)
    xs = [Fraction(x) for x, _ in centers]
    ys = [Fraction(y) for _, y in centers]
    rs = [Fraction(r) for r in radii]
    one = Fraction(1)
    for i in range(N_CIRCLES):
        if rs[i] <= 0:
            raise InvalidPacking(f"circle {i} has radius {radii[i]!r} (must be > 0)")
        for coord, name in ((xs[i], "x"), (ys[i], "y")):
            if coord - rs[i] < -tol or coord + rs[i] > one + tol:
                over = float(max(rs[i] - coord, coord + rs[i] - one))
                raise InvalidPacking(
                    f"circle {i} at ({centers[i][0]:.6f}, {centers[i][1]:.6f}) r={radii[i]:.6f} "
                    f"sticks out of the square in {name} by {over:.3e}"
                )
    contacts = 0
    near = Fraction(1, 10**9)
    for i in range(N_CIRCLES):
        for j in range(i + 1, N_CIRCLES):
            d2 = (xs[i] - xs[j]) ** 2 + (ys[i] - ys[j]) ** 2
            need = rs[i] + rs[j] - tol
            if need > 0 and d2 < need * need:
                gap = math.dist(centers[i], centers[j]) - radii[i] - radii[j]
                raise InvalidPacking(f"circles {i} and {j} overlap by {-gap:.3e}")
            limit = rs[i] + rs[j] + near
            if d2 <= limit * limit:
                contacts += 1
    return contacts


def _largest_free_spot(centers: np.ndarray, radii: np.ndarray) -> tuple[float, float, float]:
    """Approximate centre and radius of the largest circle that would still fit (a hint)."""
    g = np.linspace(0.0, 1.0, _GAP_GRID)
    px, py = np.meshgrid(g, g)
    pts = np.stack([px.ravel(), py.ravel()], axis=1)
    wall = np.minimum.reduce([pts[:, 0], pts[:, 1], 1.0 - pts[:, 0], 1.0 - pts[:, 1]])
    d = np.sqrt(((pts[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)) - radii[None, :]
    room = np.minimum(wall, d.min(axis=1))
    k = int(np.argmax(room))
    return float(pts[k, 0]), float(pts[k, 1]), float(max(room[k], 0.0))


def _svg(centers: list[tuple[float, float]], radii: list[float]) -> str:
    circles = "".join(
        f'<circle cx="{x * 400:.2f}" cy="{(1 - y) * 400:.2f}" r="{r * 400:.2f}" fill="none" stroke="black"/>'
        for (x, y), r in zip(centers, radii, strict=True)
    )
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="400" height="400">'
        f'<rect width="400" height="400" fill="white" stroke="black"/>{circles}</svg>'
    )


def _invalid(reason: str) -> dict[str, Any]:
    return {"score": 0.0, "error": reason, "feedback": f"invalid packing: {reason}"}


def _load(program_path: str) -> tuple[list[tuple[float, float]], list[float], int]:
    try:
        value = call_candidate(program_path, "construct_packing", timeout=CALL_TIMEOUT_S)
    except CandidateError as err:
        raise InvalidPacking(f"running construct_packing() failed: {err}") from None
    centers, radii = parse_packing(value)
    contacts = check_packing(centers, radii)
    return centers, radii, contacts


def _metrics(radii: list[float], contacts: int) -> dict[str, Any]:
    total = math.fsum(radii)
    return {
        "score": total,
        "sum_radii": total,
        "ratio_to_alphaevolve": total / ALPHAEVOLVE_SUM,
        "min_radius": min(radii),
        "contacts": contacts,
    }


def evaluate_stage1(program_path: str) -> dict[str, Any]:
    """Cheap: the program runs in time and returns a valid packing of the right shape."""
    try:
        _, radii, contacts = _load(program_path)
    except InvalidPacking as err:
        return _invalid(str(err))
    result = _metrics(radii, contacts)
    result["feedback"] = f"stage 1: valid packing, sum of radii {result['score']:.6f}"
    return result


def evaluate_stage2(program_path: str) -> dict[str, Any]:
    """Full evaluation with feedback: small circles, free space, contacts, and an SVG picture."""
    try:
        centers, radii, contacts = _load(program_path)
    except InvalidPacking as err:
        return _invalid(str(err))
    result = _metrics(radii, contacts)
    c_arr, r_arr = np.asarray(centers), np.asarray(radii)
    fx, fy, fr = _largest_free_spot(c_arr, r_arr)
    order = np.argsort(r_arr)[:3]
    small = ", ".join(f"#{i} r={radii[i]:.4f} at ({centers[i][0]:.3f}, {centers[i][1]:.3f})" for i in order)
    result["feedback"] = (
        f"valid packing: sum of radii {result['score']:.6f} = {result['ratio_to_alphaevolve']:.4f} x AlphaEvolve's "
        f"{ALPHAEVOLVE_SUM}.\n"
        f"smallest circles: {small}.\n"
        f"largest free spot: a circle of radius ~{fr:.4f} would still fit near ({fx:.3f}, {fy:.3f}).\n"
        f"{contacts} tight contacts (touching pairs); rigid packings have many."
    )
    listing = "\n".join(f"{x:.12f} {y:.12f} {r:.12f}" for (x, y), r in zip(centers, radii, strict=True))
    result["artifacts"] = {"packing": "x y r\n" + listing, "packing_svg": _svg(centers, radii)}
    return result


def evaluate(program_path: str) -> dict[str, Any]:
    """Single-stage evaluation (the full one)."""
    return evaluate_stage2(program_path)


def tune_objective(program_path: str) -> dict[str, Any]:
    """Cheap proxy for constants tuning (thousands of layout variants per child).

    Runs ``construct_packing`` IN this process (no child process per call) and checks the
    packing in float arithmetic with half the tolerance, so whatever passes here also passes
    the exact check in ``evaluate``. Only the tuner calls this: its numbers steer which
    constants are tried, never a stored score (the host re-scores the tuned program with
    ``evaluate``, which runs the candidate through call_candidate), so a candidate that
    tampers with this process can only choose its own constants.
    """
    source = open(program_path, encoding="utf-8").read()  # noqa: SIM115 - tiny file
    namespace: dict[str, Any] = {"__name__": "candidate", "__file__": program_path}
    try:
        exec(compile(source, program_path, "exec"), namespace)  # noqa: S102 - see the docstring
        centers, radii = parse_packing(namespace["construct_packing"]())
    except Exception as err:  # noqa: BLE001 - any failure is just an invalid variant
        return _invalid(f"{type(err).__name__}: {err}")
    c, r = np.asarray(centers), np.asarray(radii)
    tol = TOL / 2
    if np.any(r <= 0) or np.any(c - r[:, None] < -tol) or np.any(c + r[:, None] > 1 + tol):
        return _invalid("a circle is outside the square or has no radius")
    d2 = np.sum((c[:, None, :] - c[None, :, :]) ** 2, axis=-1)
    need = r[:, None] + r[None, :] - tol
    np.fill_diagonal(d2, np.inf)
    if np.any((need > 0) & (d2 < need * need)):
        return _invalid("circles overlap")
    return {"score": math.fsum(radii)}
