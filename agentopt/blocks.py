"""EVOLVE-BLOCK syntax: the markers, finding regions, replacing their bodies, checking the rest.

A ground-floor module (it imports only :mod:`agentopt.errors`): the task schema checks marker
balance with it, the evolution engine edits blocks with it, and the targets render candidates
with it, so none of them has to import another to agree on the syntax.

A program marks what the LLM may change with comment lines::

    # EVOLVE-BLOCK-START [optional label]
    ...evolvable lines...
    # EVOLVE-BLOCK-END

(``//`` and ``/*`` comments are accepted too, for C/C++/CUDA sources; markers may be
indented). Only whole comment lines count as markers, so a string literal that merely
mentions the marker text does not open a block. A file without markers is evolvable as a
whole; callers decide what that means for them (see :func:`outside_blocks_unchanged`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agentopt.errors import AgentoptError

EVOLVE_START = "EVOLVE-BLOCK-START"
EVOLVE_END = "EVOLVE-BLOCK-END"

__all__ = [
    "EVOLVE_END",
    "EVOLVE_START",
    "Block",
    "BlockError",
    "find_blocks",
    "outside_blocks_unchanged",
    "replace_block_texts",
    "skeleton",
]

_COMMENT = r"^[ \t]*(?:#|//|/\*)[ \t]*"
_START_RE = re.compile(_COMMENT + re.escape(EVOLVE_START) + r"(?![\w-])(?P<label>.*)$")
_END_RE = re.compile(_COMMENT + re.escape(EVOLVE_END) + r"(?![\w-]).*$")


class BlockError(AgentoptError, ValueError):
    """The EVOLVE-BLOCK markers are unbalanced or nested (a problem in the program text)."""


@dataclass(frozen=True)
class Block:
    """One evolvable region.

    ``start_line``/``end_line`` are the 1-based line numbers of the START and END marker
    lines; ``text`` is exactly the lines strictly between them (line endings included, so
    splicing is lossless); ``body_start``/``body_end`` are the 0-based character offsets of
    ``text`` in the code, and ``label`` is whatever followed the START marker (``*/`` removed).
    """

    index: int
    start_line: int
    end_line: int
    text: str
    body_start: int = 0
    body_end: int = 0
    label: str = ""

    @property
    def first_body_line(self) -> int:
        """0-based index of the first line inside the block."""
        return self.start_line

    @property
    def body_line_stop(self) -> int:
        """0-based index one past the last line inside the block (the END marker's index)."""
        return self.end_line - 1


def is_marker_line(line: str) -> bool:
    """True for a START or END marker comment line."""
    line = line.rstrip("\r\n")
    return bool(_START_RE.match(line) or _END_RE.match(line))


def find_blocks(code: str) -> list[Block]:
    """Return the EVOLVE-BLOCKs of ``code`` in order.

    Raises :class:`BlockError` (one line, naming line numbers) on an END without a START,
    a START inside an open block (nesting is not supported: which block would an edit
    belong to?), or a START that is never closed.
    """
    blocks: list[Block] = []
    open_line = 0  # 1-based line of the open START marker, 0 when none is open
    open_label = ""
    body_start = 0
    offset = 0
    for lineno, line in enumerate(code.splitlines(keepends=True), start=1):
        bare = line.rstrip("\r\n")
        start = _START_RE.match(bare)
        if start:
            if open_line:
                raise BlockError(
                    f"nested {EVOLVE_START} at line {lineno} (block opened at line {open_line} is not closed)"
                )
            open_line = lineno
            open_label = start.group("label").replace("*/", "").strip()
            body_start = offset + len(line)
        elif _END_RE.match(bare):
            if not open_line:
                raise BlockError(f"{EVOLVE_END} at line {lineno} without a matching {EVOLVE_START}")
            blocks.append(
                Block(
                    index=len(blocks),
                    start_line=open_line,
                    end_line=lineno,
                    text=code[body_start:offset],
                    body_start=body_start,
                    body_end=offset,
                    label=open_label,
                )
            )
            open_line = 0
        offset += len(line)
    if open_line:
        raise BlockError(f"{EVOLVE_START} at line {open_line} is never closed by {EVOLVE_END}")
    return blocks


def replace_block_texts(code: str, new_texts: list[str]) -> str:
    """Return ``code`` with the body of block ``i`` replaced by ``new_texts[i]``.

    A non-empty body that lacks a final newline gets one, so the END marker stays on its
    own line. Raises :class:`BlockError` when the number of texts differs from the number
    of blocks, or when a new body contains a marker line (it would change the block layout).
    """
    blocks = find_blocks(code)
    if len(new_texts) != len(blocks):
        raise BlockError(
            f"got {len(new_texts)} block bodies for a program with {len(blocks)} EVOLVE-BLOCK(s)"
        )
    newline = "\r\n" if "\r\n" in code else "\n"
    parts: list[str] = []
    pos = 0
    for block, text in zip(blocks, new_texts, strict=True):
        for n, line in enumerate(text.splitlines(), start=1):
            if is_marker_line(line):
                raise BlockError(
                    f"new body of EVOLVE-BLOCK {block.index + 1} contains a marker line at its line {n}"
                )
        if text and not text.endswith("\n"):
            text += newline
        parts.append(code[pos : block.body_start])
        parts.append(text)
        pos = block.body_end
    parts.append(code[pos:])
    return "".join(parts)


def skeleton(code: str) -> list[str] | None:
    """The non-evolvable lines of ``code`` (markers included), each right-stripped.

    Each block body is replaced by one placeholder line and trailing blank lines at the
    end of the file are dropped. ``None`` when the markers are malformed.
    """
    try:
        blocks = find_blocks(code)
    except BlockError:
        return None
    lines = code.splitlines()
    out: list[str] = []
    pos = 0  # 0-based line index
    for block in blocks:
        out.extend(line.rstrip() for line in lines[pos : block.start_line])  # up to and incl. START
        out.append(f"\x00<EVOLVE-BLOCK {block.index}>")
        pos = block.end_line - 1  # the END marker line, kept as outside text
    out.extend(line.rstrip() for line in lines[pos:])
    while out and not out[-1]:
        out.pop()
    return out


def outside_blocks_unchanged(old: str, new: str) -> bool:
    """True when the non-evolvable parts of ``old`` and ``new`` are identical.

    Comparison ignores trailing whitespace on each line and blank lines at the end of the
    file. Marker lines (with their labels) count as non-evolvable, so adding, removing or
    relabelling a block is a change. For a file without markers the whole file is
    evolvable: the answer is True as long as ``new`` does not introduce markers. Malformed
    markers in either text give False.
    """
    old_sk, new_sk = skeleton(old), skeleton(new)
    if old_sk is None or new_sk is None:
        return False
    return old_sk == new_sk if find_blocks(old) else not find_blocks(new)


def first_outside_difference(old: str, new: str) -> str:
    """Describe the first differing non-evolvable line (for error messages), or ``""``."""
    old_sk, new_sk = skeleton(old), skeleton(new)
    if old_sk is None or new_sk is None:
        return "EVOLVE-BLOCK markers are malformed"
    old_n = sum(1 for line in old_sk if line.startswith("\x00"))
    new_n = sum(1 for line in new_sk if line.startswith("\x00"))
    if old_n != new_n:
        return f"the program has {new_n} EVOLVE-BLOCK(s) instead of {old_n}"
    for a, b in zip(old_sk, new_sk, strict=False):
        if a != b:
            shown = b if not b.startswith("\x00") else "<EVOLVE-BLOCK body>"
            was = a if not a.startswith("\x00") else "<EVOLVE-BLOCK body>"
            return f"outside line {was[:80]!r} became {shown[:80]!r}"
    if len(old_sk) != len(new_sk):
        return f"outside code has {len(new_sk)} lines instead of {len(old_sk)}"
    return ""
