"""Turn an LLM reply into a child program: SEARCH/REPLACE diffs, full rewrites, fallbacks.

Reply format (the prompt teaches it, see :mod:`agentopt.evolve.prompts`)::

    <<<<<<< SEARCH
    lines copied from the current program
    =======
    the lines that replace them
    >>>>>>> REPLACE

LLMs drift from any format, so parsing is tolerant where the intent is unambiguous
(5-9 marker characters, code fences around or inside hunks, CRLF, prose between hunks)
and strict where guessing could corrupt the program (a truncated reply, a missing
separator, an empty SEARCH). Application tries an exact match first and then
progressively looser ones (trailing whitespace, a uniform indentation shift, blank-line
differences); at each level a SEARCH text that matches several places is an error rather
than a guess. Every error's message is one line meant both for the record and for the
next prompt, so the model can correct itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agentopt.blocks import (
    Block,
    BlockError,
    find_blocks,
    first_outside_difference,
    outside_blocks_unchanged,
    replace_block_texts,
    skeleton,
)
from agentopt.errors import AgentoptError

__all__ = [
    "DiffApplyError",
    "DiffParseError",
    "MutationOutcome",
    "NoDiffBlocksError",
    "SearchReplace",
    "apply_diffs",
    "apply_reply",
    "extract_rewrite",
    "file_header",
    "find_code_fences",
    "parse_diffs",
]


@dataclass(frozen=True)
class SearchReplace:
    """One hunk: ``search`` lines to find and the ``replace`` lines to put there.

    Both are whole lines joined with ``\\n`` and ending in ``\\n`` (``replace`` may be empty:
    a deletion). ``file`` is the path named by a ``File: path`` line before the hunk (multi-file
    programs), else None; single-file application ignores it.
    """

    search: str
    replace: str
    file: str | None = None


class DiffParseError(AgentoptError, ValueError):
    """The reply's SEARCH/REPLACE blocks are malformed; the message says how."""


class NoDiffBlocksError(DiffParseError):
    """The reply contains no SEARCH/REPLACE block at all (maybe it is a full rewrite)."""


class DiffApplyError(AgentoptError, ValueError):
    """Well-formed hunks that cannot be applied to the program; the message says why."""


# --------------------------------------------------------------------------- parsing

_SEARCH_RE = re.compile(r"^[ \t]*<{5,9}[ \t]*SEARCH\b.*$")
_DIVIDER_RE = re.compile(r"^[ \t]*={5,9}[ \t]*$")
_REPLACE_RE = re.compile(r"^[ \t]*>{5,9}[ \t]*REPLACE\b.*$")
_FENCE_RE = re.compile(r"^[ \t]{0,3}(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*?)[ \t]*$")
# "File: src/a.py" before a hunk names the file it edits (multi-file programs). Markdown
# decoration that models add (#, **, backticks, a leading "- ") is tolerated.
_FILE_RE = re.compile(
    r"^[ \t]*(?:[#>*-]+[ \t]*)?(?:\*\*)?(?:file|path)[ \t]*:[ \t]*(?:\*\*)?[ \t]*`?(?P<path>[^`*\s]+)`?"
    r"[ \t]*(?:\*\*)?[ \t]*$",
    re.IGNORECASE,
)


def file_header(line: str) -> str | None:
    """The path named by a ``File: path`` line, else None."""
    match = _FILE_RE.match(line)
    return match.group("path") if match else None


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _strip_inner_fence(lines: list[str]) -> list[str]:
    """Drop a code fence wrapped around a hunk section (``SEARCH`` then a ```python line).

    Only a matching opener/closer pair is removed, so a program that really contains a
    fence line (markdown inside a string) is left alone unless it is exactly at both ends.
    """
    if len(lines) >= 2:
        first, last = _FENCE_RE.match(lines[0]), _FENCE_RE.match(lines[-1])
        if first and last and not last.group("info") and last.group("fence")[0] == first.group("fence")[0]:
            return lines[1:-1]
    return lines


def _join(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def parse_diffs(reply: str) -> list[SearchReplace]:
    """Extract the SEARCH/REPLACE hunks of ``reply`` in order.

    Prose and code fences between hunks are ignored. Raises :class:`DiffParseError` for a
    hunk without an ``=======`` separator, a reply cut off inside a hunk, an empty SEARCH
    section or a stray end marker, and :class:`NoDiffBlocksError` when there is no hunk.
    """
    lines = _normalize_newlines(reply or "").split("\n")
    hunks: list[SearchReplace] = []
    state = "prose"  # prose | search | replace
    current_file: str | None = None  # set by a "File: path" prose line, sticky until the next one
    search: list[str] = []
    replace: list[str] = []
    opened_at = 0
    for lineno, line in enumerate(lines, start=1):
        if state == "prose":
            if _SEARCH_RE.match(line):
                state, search, replace, opened_at = "search", [], [], lineno
            elif (named := file_header(line)) is not None:
                current_file = named
            elif _REPLACE_RE.match(line):
                raise DiffParseError(
                    f"'>>>>>>> REPLACE' at reply line {lineno} without a preceding '<<<<<<< SEARCH'"
                )
        elif _SEARCH_RE.match(line):
            raise DiffParseError(
                f"hunk {len(hunks) + 1} (reply line {opened_at}) is not closed by '>>>>>>> REPLACE' "
                f"before the next '<<<<<<< SEARCH' at line {lineno}"
            )
        elif state == "search":
            if _DIVIDER_RE.match(line):
                state = "replace"
            elif _REPLACE_RE.match(line):
                raise DiffParseError(
                    f"hunk {len(hunks) + 1} (reply line {opened_at}) has no '=======' line between "
                    "its SEARCH and REPLACE parts"
                )
            else:
                search.append(line)
        else:  # replace
            if _REPLACE_RE.match(line):
                search_lines = _strip_inner_fence(search)
                if not any(s.strip() for s in search_lines):
                    raise DiffParseError(
                        f"hunk {len(hunks) + 1} (reply line {opened_at}) has an empty SEARCH part; "
                        "copy the exact lines to change from the program"
                    )
                hunks.append(
                    SearchReplace(_join(search_lines), _join(_strip_inner_fence(replace)), current_file)
                )
                state = "prose"
            else:
                replace.append(line)
    if state != "prose":
        where = "SEARCH" if state == "search" else "REPLACE"
        raise DiffParseError(
            f"reply truncated: hunk {len(hunks) + 1} (reply line {opened_at}) ends inside its {where} part "
            "without '>>>>>>> REPLACE' (reply cut off? keep diffs short)"
        )
    if not hunks:
        raise NoDiffBlocksError("no SEARCH/REPLACE blocks found in the reply")
    return hunks


# --------------------------------------------------------------------------- applying


@dataclass(frozen=True)
class _Match:
    start: int  # 0-based first code line
    stop: int  # 0-based one past the last code line
    indent_from: str = ""  # replacement indentation: replace this prefix...
    indent_to: str = ""  # ...by this one


def _leading_ws(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _indent_delta(code_line: str, search_line: str) -> tuple[str, str] | None:
    """(from, to) prefixes such that ``code_line == to + search_line[len(from):]``, if any."""
    c, s = code_line.rstrip(), search_line.rstrip()
    if c.lstrip() != s.lstrip():
        return None
    cw, sw = _leading_ws(c), _leading_ws(s)
    if cw.endswith(sw):
        return "", cw[: len(cw) - len(sw)]
    if sw.endswith(cw):
        return sw[: len(sw) - len(cw)], ""
    return None


def _match_exact(code: list[str], search: list[str]) -> list[_Match]:
    n = len(search)
    first = search[0]
    return [
        _Match(i, i + n) for i in range(len(code) - n + 1) if code[i] == first and code[i : i + n] == search
    ]


def _match_rstrip(code: list[str], search: list[str]) -> list[_Match]:
    return _match_exact([c.rstrip() for c in code], [s.rstrip() for s in search])


def _match_indent(code: list[str], search: list[str]) -> list[_Match]:
    """The whole hunk shifted by one indentation prefix (blank lines may differ in indent)."""
    n = len(search)
    anchor = next(k for k, s in enumerate(search) if s.strip())
    anchor_text = search[anchor].strip()
    out: list[_Match] = []
    for i in range(len(code) - n + 1):
        if code[i + anchor].strip() != anchor_text:
            continue
        delta = _indent_delta(code[i + anchor], search[anchor])
        if delta is None:
            continue
        frm, to = delta
        ok = True
        for c, s in zip(code[i : i + n], search, strict=True):
            if not s.strip():
                if c.strip():
                    ok = False
                    break
                continue
            s = s.rstrip()
            if not s.startswith(frm) or c.rstrip() != to + s[len(frm) :]:
                ok = False
                break
        if ok:
            out.append(_Match(i, i + n, frm, to))
    return out


def _match_blankless(code: list[str], search: list[str]) -> list[_Match]:
    """Like :func:`_match_indent`, ignoring blank lines in both the code and the hunk."""
    idx = [k for k, c in enumerate(code) if c.strip()]
    dense_code = [code[k] for k in idx]
    dense_search = [s for s in search if s.strip()]
    return [
        _Match(idx[m.start], idx[m.stop - 1] + 1, m.indent_from, m.indent_to)
        for m in _match_indent(dense_code, dense_search)
    ]


_MATCHERS: Sequence[tuple[str, Callable[[list[str], list[str]], list[_Match]]]] = (
    ("exact", _match_exact),
    ("trailing-whitespace", _match_rstrip),
    ("indentation", _match_indent),
    ("blank-lines", _match_blankless),
)


def _reindent(lines: list[str], frm: str, to: str) -> list[str]:
    """Shift replacement lines by the indentation delta found while matching the SEARCH.

    At most one of ``frm``/``to`` is non-empty. A line less indented than ``frm`` (the
    model dedented past the hunk's own base) is put at ``to`` rather than left ragged.
    """
    if not frm and not to:
        return lines
    out = []
    for line in lines:
        if not line.strip():
            out.append(line)
        elif line.startswith(frm):
            out.append(to + line[len(frm) :])
        else:
            out.append(to + line.lstrip(" \t"))
    return out


def _inside(m: _Match, block: Block) -> bool:
    return m.start >= block.first_body_line and m.stop <= block.body_line_stop


def _first_search_line(hunk: SearchReplace) -> str:
    line = next((s for s in hunk.search.split("\n") if s.strip()), "")
    return line.strip()[:80]


def _span(first: int, last: int) -> str:
    if first > last:
        return "empty"
    return f"line {first}" if first == last else f"lines {first}-{last}"


def _lines_desc(matches: Sequence[_Match]) -> str:
    shown = ", ".join(str(m.start + 1) for m in matches[:5])
    return shown + (", ..." if len(matches) > 5 else "")


def _locate(code_lines: list[str], hunk_no: int, hunk: SearchReplace, blocks: list[Block] | None) -> _Match:
    """Find where ``hunk`` applies; ``blocks`` is None when edits are not confined."""
    search = hunk.search.split("\n")
    if search and search[-1] == "":
        search.pop()
    where = f"hunk {hunk_no} (SEARCH starting {_first_search_line(hunk)!r})"
    for _name, matcher in _MATCHERS:
        matches = matcher(code_lines, search)
        if not matches:
            continue
        if blocks is not None:
            inside = [m for m in matches if any(_inside(m, b) for b in blocks)]
            if not inside:
                m = matches[0]
                spans = "; ".join(
                    f"block {b.index + 1} is {_span(b.start_line + 1, b.end_line - 1)}" for b in blocks
                )
                raise DiffApplyError(
                    f"edit touches code outside EVOLVE-BLOCK: {where} matches {_span(m.start + 1, m.stop)}, "
                    f"but only code between the markers may change ({spans})"
                )
            matches = inside
        if len(matches) > 1:
            raise DiffApplyError(
                f"{where} matches {len(matches)} places (lines {_lines_desc(matches)}); "
                "include more surrounding lines so it is unique"
            )
        return matches[0]
    raise DiffApplyError(f"{where} not found in the program; SEARCH must copy existing lines exactly")


def apply_diffs(code: str, diffs: list[SearchReplace], *, confine_to_blocks: bool = True) -> str:
    """Apply ``diffs`` to ``code`` in order (each hunk sees the previous hunks' result).

    Matching tries, in order: exact lines; lines equal up to trailing whitespace; the whole
    hunk shifted by one indentation prefix (the replacement is re-indented by the same
    delta); and the same ignoring blank lines. The first level with any match decides; a
    SEARCH that matches several places there is an error. With ``confine_to_blocks`` and a
    program that has EVOLVE-BLOCKs, a match must lie inside one block body (an ambiguous
    match is resolved in favour of the only in-block one) and the final program must keep
    every non-evolvable line. CRLF programs keep their line endings. Raises
    :class:`DiffApplyError`; a result equal to the input is an error too ("diff made no
    change"), since evaluating an unchanged program wastes a sandbox run.
    """
    if not diffs:
        raise DiffApplyError("no SEARCH/REPLACE hunks to apply")
    crlf = "\r\n" in code
    work = _normalize_newlines(code)
    try:
        confined = confine_to_blocks and bool(find_blocks(work))
    except BlockError as err:
        raise DiffApplyError(f"cannot apply diffs: the program's {err}") from None
    for n, hunk in enumerate(diffs, start=1):
        hunk = SearchReplace(_normalize_newlines(hunk.search), _normalize_newlines(hunk.replace))
        if not hunk.search.strip():
            raise DiffApplyError(f"hunk {n} has an empty SEARCH part")
        ends_with_newline = work.endswith("\n")
        lines = work.split("\n")
        if ends_with_newline:
            lines.pop()
        try:
            blocks = find_blocks(work) if confined else None
        except BlockError as err:
            raise DiffApplyError(
                f"edit touches code outside EVOLVE-BLOCK: after hunk {n - 1}, {err}"
            ) from None
        m = _locate(lines, n, hunk, blocks)
        new_lines = hunk.replace.split("\n")
        if new_lines and new_lines[-1] == "":
            new_lines.pop()
        new_lines = _reindent(new_lines, m.indent_from, m.indent_to)
        lines[m.start : m.stop] = new_lines
        work = "\n".join(lines) + ("\n" if ends_with_newline and lines else "")
    if confined and not outside_blocks_unchanged(code, work):
        raise DiffApplyError(
            f"edit touches code outside EVOLVE-BLOCK: {first_outside_difference(_normalize_newlines(code), work)}"
        )
    if crlf:
        work = work.replace("\n", "\r\n")
    if work == code:
        raise DiffApplyError("diff made no change: the REPLACE parts equal the SEARCH parts")
    return work


# --------------------------------------------------------------------------- rewrites


@dataclass(frozen=True)
class CodeFence:
    """A fenced code block found in a reply; ``line`` is the 1-based line of its opener."""

    info: str
    body: str
    line: int


_CODE_LANGS = {"", "python", "py", "python3", "cuda", "cu", "c", "cpp", "c++", "cc", "h", "hpp", "cxx"}


def find_code_fences(reply: str) -> list[CodeFence]:
    """All fenced code blocks in ``reply`` (CommonMark-style: a closer is a run of the same
    fence character at least as long as the opener). Raises :class:`DiffApplyError` for
    a fence that is never closed: the reply was cut off and the code is incomplete."""
    lines = _normalize_newlines(reply or "").split("\n")
    out: list[CodeFence] = []
    i = 0
    while i < len(lines):
        opener = _FENCE_RE.match(lines[i])
        if not opener:
            i += 1
            continue
        fence = opener.group("fence")
        info = opener.group("info").strip().split(" ")[0].lower() if opener.group("info") else ""
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            closer = _FENCE_RE.match(lines[j])
            if (
                closer
                and not closer.group("info")
                and closer.group("fence")[0] == fence[0]
                and len(closer.group("fence")) >= len(fence)
            ):
                break
            body.append(lines[j])
            j += 1
        else:
            raise DiffApplyError(
                f"reply truncated: the code fence opened at reply line {i + 1} is never closed (reply cut off?)"
            )
        out.append(CodeFence(info, _join(body), i + 1))
        i = j + 1
    return out


def _pick_program(fences: list[CodeFence]) -> CodeFence:
    """Choose the fence holding the new program: the LAST one at least half as large as the
    largest. "Largest" alone picks an old program quoted for comparison over its new
    version; "last" alone picks a short usage example appended after the program. Blocks
    tagged with a non-code language (text, bash, diff, ...) are ignored when any code
    block exists."""
    code_like = [f for f in fences if f.info in _CODE_LANGS] or fences
    biggest = max(len(f.body) for f in code_like)
    return [f for f in code_like if len(f.body) * 2 >= biggest][-1]


def _min_indent(text: str) -> str:
    indents = [_leading_ws(line) for line in text.split("\n") if line.strip()]
    return min(indents, key=len) if indents else ""


def _fit_body(new_body: str, old_body: str) -> str:
    """Re-indent a body the model gave flush-left back to the block's own indentation."""
    old_ind, new_ind = _min_indent(old_body), _min_indent(new_body)
    if len(new_ind) >= len(old_ind) or not old_ind.endswith(new_ind):
        return new_body
    extra = old_ind[: len(old_ind) - len(new_ind)]
    return "".join((extra + line if line.strip() else line) for line in new_body.splitlines(keepends=True))


def _looks_like_whole_program(candidate: str, original: str) -> bool:
    """A marker-less reply that repeats most of the original's outside code is a whole
    program whose markers were dropped, not a block body: splicing it would duplicate code."""
    sk = skeleton(original) or []
    outside = [line.strip() for line in sk if line.strip() and not line.startswith("\x00")]
    outside = [line for line in outside if "EVOLVE-BLOCK" not in line]
    if len(outside) < 2:
        return False
    have = {line.strip() for line in candidate.split("\n")}
    return sum(line in have for line in outside) >= 0.8 * len(outside)


def _only_blocks(candidate: str) -> bool:
    """True when everything outside the candidate's blocks is blank or an ellipsis comment
    (``# ...``): the reply is the evolvable regions alone, as the compact prompt shows them."""
    sk = skeleton(candidate) or []
    filler = {"", "...", "# ...", "// ...", "/* ... */"}
    return all(line.startswith("\x00") or "EVOLVE-BLOCK" in line or line.strip() in filler for line in sk)


def extract_rewrite(reply: str, original: str) -> str:
    """Full-rewrite mode: the new program from the fenced code in ``reply``.

    The fence is chosen by :func:`_pick_program`. When ``original`` has EVOLVE-BLOCKs the
    reply may be (a) a whole program with the same markers whose outside parts are
    unchanged: its block bodies are spliced into ``original``, so trailing-whitespace drift
    outside never leaks in; (b) only the blocks with their marker lines (what the compact
    prompt shows); or (c) just the new body for a one-block program, or one fenced body per
    block, in order, for several blocks. Anything else raises
    :class:`DiffApplyError` naming the reason, as does a result equal to the original.
    """
    fences = find_code_fences(reply)
    if not fences:
        raise DiffApplyError("no fenced code block (```python ... ```) in the reply")
    chosen = _pick_program(fences)
    candidate = chosen.body
    if not candidate.strip():
        raise DiffApplyError(f"the code block at reply line {chosen.line} is empty")
    orig = _normalize_newlines(original)
    try:
        orig_blocks = find_blocks(orig)
    except BlockError as err:
        raise DiffApplyError(f"cannot splice a rewrite: the program's {err}") from None
    if not orig_blocks:
        result = candidate
    else:
        try:
            cand_blocks = find_blocks(candidate)
        except BlockError as err:
            raise DiffApplyError(f"rewrite has malformed EVOLVE-BLOCK markers: {err}") from None
        if cand_blocks and len(cand_blocks) == len(orig_blocks) and _only_blocks(candidate):
            bodies = [b.text for b in cand_blocks]  # just the regions, markers kept (compact prompts)
        elif cand_blocks:
            if not outside_blocks_unchanged(orig, candidate):
                raise DiffApplyError(
                    "rewrite changes code outside EVOLVE-BLOCK: " + first_outside_difference(orig, candidate)
                )
            bodies = [b.text for b in cand_blocks]
        elif _looks_like_whole_program(candidate, orig):
            raise DiffApplyError(
                "rewrite is a whole program without the EVOLVE-BLOCK markers; keep the marker lines "
                "or reply with only the block body"
            )
        elif len(orig_blocks) == 1:
            bodies = [candidate]
        else:
            code_like = [f for f in fences if f.info in _CODE_LANGS and f.body.strip()]
            if len(code_like) != len(orig_blocks) or any(find_blocks(f.body) for f in code_like):
                raise DiffApplyError(
                    f"the program has {len(orig_blocks)} EVOLVE-BLOCKs; reply with the whole program "
                    f"(markers included) or exactly {len(orig_blocks)} fenced block bodies in order "
                    f"(got {len(code_like)})"
                )
            bodies = [f.body for f in code_like]
        bodies = [_fit_body(new, old.text) for new, old in zip(bodies, orig_blocks, strict=True)]
        try:
            result = replace_block_texts(orig, bodies)
        except BlockError as err:
            raise DiffApplyError(f"cannot splice the rewrite: {err}") from None
    if "\r\n" in original:
        result = result.replace("\n", "\r\n")
    if [line.rstrip() for line in result.rstrip().split("\n")] == [
        line.rstrip() for line in original.rstrip().split("\n")
    ]:
        raise DiffApplyError("rewrite made no change to the program")
    return result


# --------------------------------------------------------------------------- one entry point


@dataclass(frozen=True)
class MutationOutcome:
    """What became of one LLM reply: the child ``code``, or ``error`` saying why none."""

    code: str | None
    error: str | None
    kind: str  # "diff" | "rewrite"

    @property
    def ok(self) -> bool:
        return self.code is not None


def _try_rewrite(code: str, reply: str) -> MutationOutcome:
    try:
        return MutationOutcome(extract_rewrite(reply, code), None, "rewrite")
    except (DiffApplyError, BlockError) as err:
        return MutationOutcome(None, str(err), "rewrite")


def _try_diff(code: str, reply: str) -> MutationOutcome:
    try:
        return MutationOutcome(apply_diffs(code, parse_diffs(reply)), None, "diff")
    except (DiffParseError, DiffApplyError, BlockError) as err:
        return MutationOutcome(None, str(err), "diff")


def _has_fence(reply: str) -> bool:
    return any(_FENCE_RE.match(line) for line in _normalize_newlines(reply).split("\n"))


def _has_hunk(reply: str) -> bool:
    return any(_SEARCH_RE.match(line) for line in _normalize_newlines(reply).split("\n"))


def apply_reply(code: str, reply: str, mode: str = "diff") -> MutationOutcome:
    """Apply an LLM ``reply`` to ``code``; never raises for a bad reply.

    ``mode="diff"``: parse and apply SEARCH/REPLACE hunks; a reply with no hunk but a fenced
    program falls back to a rewrite. ``mode="rewrite"``: extract a rewrite; a reply made of
    hunks is applied as diffs (a program never contains hunk marker lines). ``kind`` says which path produced the
    outcome. Raises ``ValueError`` only for an unknown ``mode`` (a caller bug).
    """
    if mode not in ("diff", "rewrite"):
        raise ValueError(f"unknown mutation mode {mode!r} (expected 'diff' or 'rewrite')")
    if not reply or not reply.strip():
        return MutationOutcome(None, "empty reply", mode)
    # The content decides, not the mode: "<<<<<<< SEARCH" lines never occur in a program,
    # and models asked for one format regularly answer in the other.
    if _has_hunk(reply):
        return _try_diff(code, reply)
    if _has_fence(reply):
        out = _try_rewrite(code, reply)
        if out.error is not None and mode == "diff":
            return MutationOutcome(
                None,
                f"no SEARCH/REPLACE blocks in the reply, and its code block is not a usable rewrite: {out.error}",
                "rewrite",
            )
        return out
    if mode == "diff":
        return MutationOutcome(
            None, "no SEARCH/REPLACE blocks found in the reply (and no fenced code)", "diff"
        )
    return MutationOutcome(None, "no fenced code block (```python ... ```) in the reply", "rewrite")
