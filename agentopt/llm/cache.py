"""Append-only JSONL cache of LLM answers, keyed by request content: record once, replay offline.

Why an occurrence counter is part of the key: a sampling run legitimately asks the *same*
prompt several times and expects different answers (temperature > 0). Keying on content
alone would replay the first answer every time and change the run. Instead the n-th time a
request is asked in this process it maps to the n-th recorded answer, so replaying a run
reproduces it answer for answer (given the same seed and call order).

Why JSONL, append-only, tolerant of a torn last line: a crash (or kill) mid-write must not
lose the answers already paid for; each answer is one line written straight to the OS (one
``write`` on a descriptor kept open in append mode, so it survives the process being killed) and a partial last line is skipped on load (and a newline is
written before appending after it). Like the program store (SQLite synchronous=NORMAL) it does
not fsync per answer: that cost 0.7-2.6 ms per iteration and only protects against power loss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import weakref
from pathlib import Path
from typing import Any

from agentopt.errors import LLMError
from agentopt.llm.types import Completion


class ReplayMiss(LLMError):
    """A replay-only cache has no answer: the run diverged from the recording. Never a
    per-iteration rejection, so a diverged CI replay fails instead of passing silently."""

log = logging.getLogger("agentopt.llm")

#: Fields of a request that determine its answer; anything else is ignored by :meth:`RequestCache.key`.
KEY_FIELDS = ("model", "messages", "temperature", "max_tokens", "seed", "extra", "occurrence")


class RequestCache:
    """Request-content-keyed store of completions backed by one JSONL file."""

    def __init__(self, path: Path, *, replay_only: bool = False) -> None:
        self.path = Path(path)
        self.replay_only = replay_only
        self._lock = threading.Lock()
        self._entries: dict[str, Completion] = {}
        self._occurrences: dict[str, int] = {}
        self._fd: int | None = None
        self.skipped_lines = 0
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("r", encoding="utf-8", errors="replace") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    completion = Completion.model_validate(row["completion"])
                    key = str(row["key"])
                except (ValueError, KeyError, TypeError):
                    # A torn line from a crash mid-write (or a hand edit): skip it, keep the rest.
                    self.skipped_lines += 1
                    log.warning("LLM cache %s: skipping unreadable line %d", self.path, lineno)
                    continue
                self._entries.setdefault(key, completion)  # first answer recorded wins

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @staticmethod
    def key(request: dict[str, Any]) -> str:
        """sha256 of the canonical JSON of the request's answer-determining fields (:data:`KEY_FIELDS`).

        Callers put ``model``, ``messages``, ``temperature``, ``max_tokens``, ``seed``, optional
        ``extra`` (other provider kwargs) and ``occurrence`` (see :meth:`next_key`) in ``request``.
        """
        canonical = {k: request.get(k) for k in KEY_FIELDS}
        blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def next_key(self, request: dict[str, Any]) -> str:
        """Key for this request's next occurrence in this process (0 the first time, then 1, ...)."""
        head, tail = _canonical_parts(request)
        base = _digest(head, None, tail)
        with self._lock:
            n = self._occurrences.get(base, 0)
            self._occurrences[base] = n + 1
        return _digest(head, n, tail)

    def get(self, key: str) -> Completion | None:
        """The recorded completion (marked ``cached=True``) or None."""
        with self._lock:
            hit = self._entries.get(key)
        return hit.model_copy(update={"cached": True}) if hit is not None else None

    def put(self, key: str, completion: Completion) -> None:
        """Store and durably append one answer (no-op if the key is already recorded)."""
        stored = completion.model_copy(update={"cached": False})
        line = json.dumps({"key": key, "completion": stored.model_dump(mode="json")}, ensure_ascii=False)
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = stored
            fd = self._append_fd()
            prefix = b""
            size = os.fstat(fd).st_size
            if size > 0 and os.pread(fd, 1, size - 1) != b"\n":  # a writer died mid-line
                prefix = b"\n"
            data = prefix + line.encode("utf-8") + b"\n"
            while data:  # one write() normally; a short write (full disk, signal) continues
                data = data[os.write(fd, data) :]

    def _append_fd(self) -> int:
        """The cache file, opened once for appending (caller holds the lock).

        Why kept open: reopening per answer (mkdir + open + seek + read + close) was about a
        third of the cost of recording one, on every LLM call. ``O_APPEND`` writes go straight
        to the OS (a killed process loses nothing written), and each lands at the current end
        even if another process appends to the same file. Closed when the cache is collected."""
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            weakref.finalize(self, os.close, self._fd)
        return self._fd


# KEY_FIELDS in sorted order split around "occurrence": the canonical JSON is
# head + "occurrence" + tail, so a request's two keys (base, n-th occurrence) share ONE dump of
# the messages (the bulk of it) instead of two, byte for byte what :meth:`RequestCache.key` hashes.
_HEAD_FIELDS = tuple(k for k in sorted(KEY_FIELDS) if k < "occurrence")
_TAIL_FIELDS = tuple(k for k in sorted(KEY_FIELDS) if k > "occurrence")


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _canonical_parts(request: dict[str, Any]) -> tuple[str, str]:
    head = _dump({k: request.get(k) for k in _HEAD_FIELDS})
    tail = _dump({k: request.get(k) for k in _TAIL_FIELDS})
    return head[:-1] + ',"occurrence":', "," + tail[1:]


def _digest(head: str, occurrence: int | None, tail: str) -> str:
    return hashlib.sha256((head + _dump(occurrence) + tail).encode("utf-8")).hexdigest()
