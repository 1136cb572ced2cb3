"""Feature dimensions of a program and their mapping to MAP-Elites bin coordinates.

A program's *raw* feature vector is computed once, when it is added, and stored with it.
Storing the raw values (not the bins) is what lets a reopened database rebuild exactly the
same grid: ranges and bins are re-derived by replaying the stored values in insertion
order, so nothing depends on recomputing distances with code that may have changed since.

Dimensions (``SearchSpec.feature_dimensions``):

- ``complexity``: ``Program.complexity`` (the controller fills it from
  ``hashing.code_complexity``); when it is 0 the code length stands in, so an unfilled
  field still spreads programs instead of piling them into one bin.
- ``diversity``: mean distance of the program's code to a small fixed reference sample of
  its island (the first :data:`REFERENCE_SAMPLE` ok programs that originated there). It
  uses :func:`profile_distance`, a token-multiset distance that is O(code length) and
  needs no pairwise alignment, so ``add()`` stays cheap whatever ``hashing.code_distance``
  costs.
- ``score``: the program's score.
- any other name: that evaluator metric (0.0 when the program did not report it).

Bins adapt to observed ranges (like OpenEvolve), but when a value falls outside the
current range the range grows with a margin (:data:`RANGE_MARGIN`) and the island's grid
is rebuilt. The margin makes growth geometric, so rebuilds are logarithmically rare even
for monotonically growing values; the result depends only on the insertion order.
"""

from __future__ import annotations

import importlib
import math
import re
import sys
import threading
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

BUILTIN_DIMENSIONS = ("complexity", "diversity", "score")
REFERENCE_SAMPLE = 8  # programs per island that "diversity" is measured against
RANGE_MARGIN = 0.25  # fraction of the new span added beyond a value that widened a range

_TOKEN = re.compile(r"\w+|[^\w\s]")

Cell = tuple[int, ...]


PROFILE_BUCKETS = 1024  # hashed token vocabulary; collisions only blur distances slightly
_bucket_cache: dict[str, int] = {}


@dataclass(frozen=True, slots=True)
class CodeProfile:
    """Token multiset of one program as a bucketed count vector (what :func:`profile_distance`
    compares). Buckets come from ``zlib.crc32``, never ``hash()``, so they are the same in
    every process."""

    counts: np.ndarray  # float64[PROFILE_BUCKETS]
    total: float


def import_numpy_in_background() -> None:
    """Start importing numpy (~0.15 s of CPU) on a daemon thread.

    Why: the first program's features need numpy right after the initial evaluation, and while
    that evaluation runs (the sandbox starting its worker, the job itself) the event loop only
    waits. An import started here overlaps that wait; a later ``import numpy`` in the main
    thread blocks on the import lock until it is done, so nothing is imported twice.
    """
    if "numpy" not in sys.modules:
        threading.Thread(target=importlib.import_module, args=("numpy",), name="agentopt-import-numpy",
                         daemon=True).start()


def _buckets(tokens: list[str]) -> list[int]:
    """Bucket of each token; cached, with the common all-hit case done by C-level ``map``."""
    ids = list(map(_bucket_cache.get, tokens))
    if None in ids:
        if len(_bucket_cache) > 200_000:  # bound memory on adversarial vocabularies
            _bucket_cache.clear()
        for i, token in enumerate(tokens):
            if ids[i] is None:
                ids[i] = _bucket_cache[token] = zlib.crc32(token.encode("utf-8")) % PROFILE_BUCKETS
    return ids  # type: ignore[return-value]


def code_profile(code: str) -> CodeProfile:
    """Tokenize ``code`` (identifiers, numbers, single punctuation) into a bucketed multiset."""
    import numpy as np  # deferred: numpy costs ~0.15 s to import; start-up needs none of it

    counts = Counter(_TOKEN.findall(code))
    if not counts:
        return CodeProfile(np.zeros(PROFILE_BUCKETS), 0.0)
    weights = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
    vec = np.bincount(np.array(_buckets(list(counts))), weights=weights, minlength=PROFILE_BUCKETS)
    return CodeProfile(vec, float(weights.sum()))


def profile_distance(a: CodeProfile, b: CodeProfile) -> float:
    """Dice distance of two token multisets, in [0, 1]; 0 for identical token multisets.

    Order-insensitive on purpose: a cheap, stable diversity signal, not an equivalence test.
    """
    if a.total + b.total == 0:
        return 0.0
    import numpy as np  # deferred: numpy costs ~0.15 s to import; start-up needs none of it

    return 1.0 - 2.0 * float(np.minimum(a.counts, b.counts).sum()) / (a.total + b.total)


class ReferenceSet:
    """The fixed reference sample of one island as a matrix, so a program's mean distance
    to all references is one vectorized operation instead of a Python loop per reference.
    The arrays are made on the first ``append`` (numpy is imported only when a program's
    features are computed, after the run has started)."""

    def __init__(self) -> None:
        self._matrix: np.ndarray | None = None
        self._totals: np.ndarray | None = None

    def __len__(self) -> int:
        return 0 if self._totals is None else len(self._totals)

    def append(self, profile: CodeProfile) -> None:
        import numpy as np  # deferred: numpy costs ~0.15 s to import; start-up needs none of it

        if self._matrix is None or self._totals is None:
            self._matrix, self._totals = profile.counts[None, :].copy(), np.array([profile.total])
            return
        self._matrix = np.vstack([self._matrix, profile.counts])
        self._totals = np.append(self._totals, profile.total)

    def mean_distance(self, own: CodeProfile) -> float:
        """Mean :func:`profile_distance` from ``own`` to each reference (0.0 when empty)."""
        if self._matrix is None or self._totals is None:
            return 0.0
        import numpy as np  # deferred: numpy costs ~0.15 s to import; start-up needs none of it

        totals = self._totals + own.total
        common = np.minimum(self._matrix, own.counts).sum(axis=1)
        safe = np.where(totals > 0, totals, 1.0)
        dist = np.where(totals > 0, 1.0 - 2.0 * common / safe, 0.0)
        return math.fsum(dist.tolist()) / len(self)


def fast_code_distance(a: str, b: str) -> float:
    """:func:`profile_distance` on two source strings (fallback when hashing is absent)."""
    return profile_distance(code_profile(a), code_profile(b))


def bins_for(
    dimensions: Sequence[str], feature_bins: int | dict[str, int], default: int = 10
) -> tuple[int, ...]:
    """Bins per dimension from ``SearchSpec.feature_bins`` (an int, or a per-dimension dict)."""
    if isinstance(feature_bins, int):
        return tuple(max(1, feature_bins) for _ in dimensions)
    return tuple(max(1, int(feature_bins.get(dim, default))) for dim in dimensions)


def raw_features(
    dimensions: Sequence[str],
    *,
    code: str,
    complexity: float,
    score: float,
    metrics: dict[str, float],
    profile: CodeProfile | None,
    references: ReferenceSet | None,
) -> tuple[float, ...]:
    """The raw feature vector of one program (see the module docstring for each dimension)."""
    values: list[float] = []
    for dim in dimensions:
        if dim == "complexity":
            value = float(complexity) if complexity else float(len(code))
        elif dim == "diversity":
            if references is None or not len(references):
                value = 0.0
            else:
                value = references.mean_distance(profile if profile is not None else code_profile(code))
        elif dim == "score":
            value = float(score)
        else:
            value = float(metrics.get(dim, 0.0))
        values.append(value if math.isfinite(value) else 0.0)
    return tuple(values)


@dataclass(slots=True)
class BinMapper:
    """Adaptive per-dimension ranges of one island, mapping raw values to a grid cell."""

    bins: tuple[int, ...]
    lo: list[float] = field(default_factory=list)
    hi: list[float] = field(default_factory=list)
    ready: bool = False  # set by the first observation (``lo`` is empty with zero dimensions)

    def observe(self, values: Sequence[float]) -> bool:
        """Widen ranges to include ``values``; True when any range changed (grid must be rebuilt)."""
        if not self.ready:
            self.lo = list(values)
            self.hi = list(values)
            self.ready = True
            return True
        changed = False
        for i, v in enumerate(values):
            lo, hi = self.lo[i], self.hi[i]
            if lo <= v <= hi:
                continue
            new_lo, new_hi = min(lo, v), max(hi, v)
            margin = (new_hi - new_lo) * RANGE_MARGIN
            # Grow only on the side that moved; geometric growth bounds the rebuild count.
            if v < lo:
                new_lo -= margin
            else:
                new_hi += margin
            self.lo[i], self.hi[i] = new_lo, new_hi
            changed = True
        return changed

    def cell(self, values: Sequence[float]) -> Cell:
        """Bin coordinates of ``values`` under the current ranges (values outside clamp)."""
        coords: list[int] = []
        for i, v in enumerate(values):
            n = self.bins[i]
            span = self.hi[i] - self.lo[i]
            if span <= 0.0 or not math.isfinite(span):
                coords.append(0)
                continue
            b = int((v - self.lo[i]) / span * n)
            coords.append(0 if b < 0 else n - 1 if b >= n else b)
        return tuple(coords)
