"""Inert display of untrusted text (program code, evaluator feedback, stdout, LLM replies).

Everything a candidate program or its evaluator prints is attacker-controlled from the
host's point of view: it may carry terminal escape sequences (which can rewrite the
operator's screen, set the window title or hide text) and markdown fences that would
let it "close" the block it is quoted in and pose as instructions to the next LLM
prompt. These helpers make such text safe to show: :func:`strip_control` for terminals
and prompts, :func:`fence` for quoting it in markdown, :func:`truncate_middle` for size.
"""

from __future__ import annotations

import re

__all__ = ["fence", "strip_control", "truncate_middle"]

# ESC-introduced sequences (7-bit) and their 8-bit C1 equivalents:
#   CSI  ESC [ ... final byte    | 0x9B ... final     (colors, cursor moves, screen clears)
#   OSC  ESC ] ... BEL or ST     | 0x9D ... BEL or ST (window title, hyperlinks, clipboard!)
#   DCS/SOS/PM/APC  ESC P/X/^/_ ... ST | 0x90/0x98/0x9E/0x9F ... ST
#   other two-byte escapes  ESC <0x20-0x7E>
# An unterminated string sequence is removed up to the end of the text: a truncated
# OSC must not survive as a dangling prefix that swallows what the terminal prints next.
_ESCAPES = re.compile(
    r"""
    (?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?                         # CSI (final byte may be missing)
  | (?:\x1b[\]PX^_]|[\x9d\x90\x98\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c|$)  # OSC/DCS/SOS/PM/APC
  | \x1b[ -~]?                                               # any other escape (or a lone ESC)
    """,
    re.VERBOSE,
)
# C0 controls except TAB (0x09) and LF (0x0A), DEL, C1 controls, and the Unicode
# bidirectional overrides/isolates that can make displayed code read differently from
# what it is ("Trojan Source", CVE-2021-42574).
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f\x80-\x9f\u202a-\u202e\u2066-\u2069]")


def strip_control(text: str) -> str:
    """Remove ANSI/OSC escape sequences and control characters, keeping ``\\n`` and ``\\t``.

    ``\\r\\n`` becomes ``\\n`` and a lone ``\\r`` (progress-bar style overwrites) becomes
    ``\\n`` so that no printed line can hide the one before it. Bidi override characters
    are removed as well. The result is safe to print on a terminal and to embed in a prompt.
    """
    if not text:
        return ""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _ESCAPES.sub("", text)
    return _CONTROLS.sub("", text)


_BACKTICK_RUN = re.compile(r"`+")


def fence(text: str, lang: str = "") -> str:
    """Wrap ``text`` in a markdown code fence that its content cannot close.

    CommonMark closes a backtick fence only with a run of backticks at least as long as
    the opener, so the fence is one backtick longer than the longest run inside the text
    (and never shorter than three). ``lang`` is reduced to a safe info-string word.
    """
    longest = max((len(m.group(0)) for m in _BACKTICK_RUN.finditer(text)), default=0)
    ticks = "`" * max(3, longest + 1)
    info = re.sub(r"[^A-Za-z0-9_+.#-]", "", lang)[:32]
    body = text if text.endswith("\n") or not text else text + "\n"
    return f"{ticks}{info}\n{body}{ticks}"


def truncate_middle(text: str, limit: int) -> str:
    """Shorten ``text`` to at most ``limit`` characters, keeping its head and its tail.

    The cut is replaced by ``... [N chars omitted] ...`` on its own line: the start of an
    output usually says what ran and the end says how it failed, so both are worth more
    than the middle. Cuts snap to line boundaries when one is near, so code stays readable.
    When ``limit`` is too small to hold the marker, the text is simply cut to ``limit``.
    """
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    # Size the marker for the largest possible N, so the real one can only be shorter.
    widest = len(f"\n... [{len(text)} chars omitted] ...\n")
    keep = limit - widest
    if keep <= 0:
        return text[:limit]
    head_len = (keep + 1) // 2
    tail_len = keep - head_len
    head_end = head_len
    tail_start = len(text) - tail_len
    # Snap to line boundaries when that loses at most a quarter of each side.
    nl = text.rfind("\n", 0, head_end)
    if nl != -1 and head_end - nl <= head_len // 4:
        head_end = nl
    nl = text.find("\n", tail_start)
    if nl != -1 and nl + 1 - tail_start <= tail_len // 4:
        tail_start = nl + 1
    return f"{text[:head_end]}\n... [{tail_start - head_end} chars omitted] ...\n{text[tail_start:]}"
