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

import math
import re
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat

BUILTIN_DIMENSIONS = ("complexity", "diversity", "score")
REFERENCE_SAMPLE = 8  # programs per island that "diversity" is measured against
RANGE_MARGIN = 0.25  # fraction of the new span added beyond a value that widened a range

_TOKEN = re.compile(r"\w+|[^\w\s]")

Cell = tuple[int, ...]


PROFILE_BUCKETS = 1024  # hashed token vocabulary; collisions only blur distances slightly
_bucket_cache: dict[str, int] = {}


@dataclass(frozen=True, slots=True)
class CodeProfile:
    """Token multiset of one program as sparse bucket counts (what :func:`profile_distance`
    compares). Buckets come from ``zlib.crc32``, never ``hash()``, so they are the same in
    every process.

    Plain ints in a dict, not a numpy vector: every sum here is a sum of integer counts, so it
    is exact in any order and the distances are bit-identical to a dense float64 computation,
    while a run needs no numpy (~0.15 s of CPU to import) for its default feature dimensions.
    """

    counts: dict[int, int]  # bucket -> token count, only buckets that occur
    total: float


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
    tokens = Counter(_TOKEN.findall(code))
    counts: dict[int, int] = {}
    get = counts.get
    for bucket, n in zip(_buckets(list(tokens)), tokens.values(), strict=True):
        counts[bucket] = get(bucket, 0) + n
    return CodeProfile(counts, float(sum(tokens.values())))


def _common(a: dict[int, int], b: dict[int, int]) -> int:
    """Size of the multiset intersection: sum over buckets of the smaller count."""
    if len(a) > len(b):
        a, b = b, a
    return sum(map(min, a.values(), map(b.get, a, repeat(0))))


def profile_distance(a: CodeProfile, b: CodeProfile) -> float:
    """Dice distance of two token multisets, in [0, 1]; 0 for identical token multisets.

    Order-insensitive on purpose: a cheap, stable diversity signal, not an equivalence test.
    """
    if a.total + b.total == 0:
        return 0.0
    return 1.0 - 2.0 * float(_common(a.counts, b.counts)) / (a.total + b.total)


class ReferenceSet:
    """The fixed reference sample of one island (at most :data:`REFERENCE_SAMPLE` profiles),
    which a program's ``diversity`` is the mean distance to."""

    def __init__(self) -> None:
        self._profiles: list[CodeProfile] = []

    def __len__(self) -> int:
        return len(self._profiles)

    def append(self, profile: CodeProfile) -> None:
        self._profiles.append(profile)

    def mean_distance(self, own: CodeProfile) -> float:
        """Mean :func:`profile_distance` from ``own`` to each reference (0.0 when empty)."""
        if not self._profiles:
            return 0.0
        dist = [profile_distance(own, ref) for ref in self._profiles]
        return math.fsum(dist) / len(dist)


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
