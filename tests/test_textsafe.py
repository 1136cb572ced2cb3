"""agentopt.textsafe: terminal-safe text, unbreakable fences, middle truncation."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from agentopt.textsafe import fence, strip_control, truncate_middle


def test_strip_control_removes_ansi_osc_and_controls() -> None:
    hostile = (
        "ok \x1b[31mred\x1b[0m"  # SGR colors
        "\x1b]0;pwned title\x07"  # OSC window title (BEL-terminated)
        "\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\"  # OSC 8 hyperlink (ST-terminated)
        "\x1b[2J\x1b[H"  # clear screen, cursor home
        "\x9b31m"  # 8-bit CSI
        "a\x00b\x07c\x08d\x7fe\x85f"  # NUL, BEL, BS, DEL, C1 NEL
        "\u202egnp.exe"  # bidi override
        "\ttab\nline2\r\nline3\roverwrite"
    )
    out = strip_control(hostile)
    assert out == "ok redlinkabcdefgnp.exe\ttab\nline2\nline3\noverwrite"
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", out)


def test_strip_control_unterminated_osc_is_dropped_to_the_end() -> None:
    assert strip_control("before\x1b]52;c;ZXZpbA==") == "before"
    assert strip_control("x\x1b") == "x"


def test_strip_control_keeps_plain_unicode() -> None:
    text = "naïve — 日本語 ✓ emoji 🙂\n\tindented"
    assert strip_control(text) == text


def test_fence_is_longer_than_any_backtick_run() -> None:
    text = "a\n```\nstill inside\n`````\nend"
    fenced = fence(text, "text")
    opener, *_ = fenced.split("\n")
    assert opener == "``````text"
    assert fenced.endswith("\n``````")
    assert fenced[len(opener) + 1 : -len("``````") - 1] == text


def test_fence_sanitizes_lang_and_handles_empty() -> None:
    assert fence("", "py\n```x") == "```pyx\n```"
    assert fence("x\n") == "```\nx\n```"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("`~ab\n "))))
def test_fence_cannot_be_closed_by_content(text: str) -> None:
    fenced = fence(text)
    ticks = fenced.split("\n", 1)[0]
    inner = fenced.split("\n")[1:-1]
    # CommonMark: a closing fence is a line of >= len(opener) backticks (up to 3 spaces indent).
    assert not any(re.fullmatch(" {0,3}`{" + str(len(ticks)) + r",}\s*", line) for line in inner)


def test_truncate_middle_keeps_head_and_tail() -> None:
    text = "".join(f"line {i}\n" for i in range(1000))
    out = truncate_middle(text, 300)
    assert len(out) <= 300
    assert out.startswith("line 0\nline 1\n")
    assert out.endswith("line 999\n")
    omitted = int(re.search(r"\[(\d+) chars omitted\]", out).group(1))
    kept = len(out) - len(re.search(r"\n\.\.\. \[\d+ chars omitted\] \.\.\.\n", out).group(0))
    assert kept + omitted == len(text)


def test_truncate_middle_short_text_and_tiny_limits() -> None:
    assert truncate_middle("short", 10) == "short"
    assert truncate_middle("x" * 50, 5) == "xxxxx"
    assert truncate_middle("abc", 0) == ""


@settings(max_examples=200, deadline=None)
@given(st.text(), st.integers(min_value=0, max_value=400))
def test_truncate_middle_never_exceeds_limit(text: str, limit: int) -> None:
    out = truncate_middle(text, limit)
    assert len(out) <= max(limit, 0)
    if len(text) <= limit:
        assert out == text
