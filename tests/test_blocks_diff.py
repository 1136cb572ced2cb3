"""EVOLVE-BLOCKs, SEARCH/REPLACE parsing and application, rewrites, apply_reply."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agentopt.blocks import BlockError, find_blocks, outside_blocks_unchanged, replace_block_texts
from agentopt.errors import AgentoptError
from agentopt.evolve.diff import (
    DiffApplyError,
    DiffParseError,
    NoDiffBlocksError,
    SearchReplace,
    apply_diffs,
    apply_reply,
    extract_rewrite,
    parse_diffs,
)
from agentopt.evolve.prompts import diff_example

PROGRAM = """\
import math


def helper(x):
    return x + 1


# EVOLVE-BLOCK-START
def solve(values):
    total = 0
    for x in values:
        total += x * x
    return math.sqrt(total)
# EVOLVE-BLOCK-END


def main():
    print(solve([3, 4]))
"""

NESTED = """\
class Model:
    def forward(self, x):
        # EVOLVE-BLOCK-START kernel
        if x > 0:
            y = x * 2
            return y
        # EVOLVE-BLOCK-END
        return 0
"""

TWO_BLOCKS = """\
# EVOLVE-BLOCK-START first
A = 1
# EVOLVE-BLOCK-END
B = 2
// EVOLVE-BLOCK-START second
C = 3
// EVOLVE-BLOCK-END
"""


def hunk(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"


# ------------------------------------------------------------------ blocks


def test_find_blocks_positions_labels_and_text() -> None:
    blocks = find_blocks(TWO_BLOCKS)
    assert [(b.index, b.start_line, b.end_line, b.label) for b in blocks] == [
        (0, 1, 3, "first"),
        (1, 5, 7, "second"),
    ]
    assert [b.text for b in blocks] == ["A = 1\n", "C = 3\n"]
    assert TWO_BLOCKS[blocks[1].body_start : blocks[1].body_end] == "C = 3\n"
    (indented,) = find_blocks(NESTED)
    assert indented.label == "kernel" and indented.text.startswith("        if x > 0:")


def test_marker_inside_a_string_is_not_a_block() -> None:
    code = 'X = "# EVOLVE-BLOCK-START"\nprint(X)\n'
    assert find_blocks(code) == []


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (
            "# EVOLVE-BLOCK-START\nx\n# EVOLVE-BLOCK-START\ny\n# EVOLVE-BLOCK-END\n",
            "nested EVOLVE-BLOCK-START at line 3",
        ),
        ("x\n# EVOLVE-BLOCK-END\n", "EVOLVE-BLOCK-END at line 2 without"),
        ("# EVOLVE-BLOCK-START\nx\n", "line 1 is never closed"),
    ],
)
def test_unbalanced_or_nested_markers(code: str, reason: str) -> None:
    with pytest.raises(BlockError, match=reason) as info:
        find_blocks(code)
    assert isinstance(info.value, AgentoptError) and "\n" not in str(info.value)


def test_replace_block_texts_and_outside_check() -> None:
    new = replace_block_texts(TWO_BLOCKS, ["A = 10\nA += 1", ""])
    assert new == TWO_BLOCKS.replace("A = 1\n", "A = 10\nA += 1\n").replace("C = 3\n", "")
    assert outside_blocks_unchanged(TWO_BLOCKS, new)
    assert not outside_blocks_unchanged(TWO_BLOCKS, new.replace("B = 2", "B = 3"))
    assert outside_blocks_unchanged(TWO_BLOCKS, new.replace("B = 2", "B = 2   ") + "\n\n")
    with pytest.raises(BlockError, match="got 1 block bodies"):
        replace_block_texts(TWO_BLOCKS, ["x"])
    with pytest.raises(BlockError, match="marker line"):
        replace_block_texts(TWO_BLOCKS, ["x\n# EVOLVE-BLOCK-END\nB = 5\n# EVOLVE-BLOCK-START\n", "y"])


def test_outside_unchanged_detects_marker_changes() -> None:
    assert not outside_blocks_unchanged(TWO_BLOCKS, TWO_BLOCKS.replace("START first", "START renamed"))
    assert not outside_blocks_unchanged(TWO_BLOCKS, "A = 1\nB = 2\nC = 3\n")
    assert not outside_blocks_unchanged(TWO_BLOCKS, TWO_BLOCKS + "# EVOLVE-BLOCK-START\n")
    assert outside_blocks_unchanged("x = 1\n", "y = 2\n")  # no blocks: the whole file is evolvable
    assert not outside_blocks_unchanged("x = 1\n", "# EVOLVE-BLOCK-START\ny\n# EVOLVE-BLOCK-END\n")


# ------------------------------------------------------------------ parsing


def test_parse_multi_hunk_with_prose_and_fences() -> None:
    reply = (
        "I will vectorize the loop.\n\n```python\n"
        + hunk("    total = 0\n", "    total = 0.0\n")
        + "```\n\nAnd also:\n\n```\n"
        + hunk("    return math.sqrt(total)\n", "    return math.hypot(*values)\n")
        + "```\nDone."
    )
    assert parse_diffs(reply) == [
        SearchReplace("    total = 0\n", "    total = 0.0\n"),
        SearchReplace("    return math.sqrt(total)\n", "    return math.hypot(*values)\n"),
    ]


def test_parse_crlf_marker_lengths_and_fences_inside_hunks() -> None:
    reply = "<<<<< SEARCH\r\n```python\r\na = 1\r\n```\r\n=========\r\n```python\r\na = 2\r\n```\r\n>>>>>>>>> REPLACE\r\n"
    assert parse_diffs(reply) == [SearchReplace("a = 1\n", "a = 2\n")]


def test_parse_deletion_hunk_has_empty_replace() -> None:
    assert parse_diffs(hunk("x = 1\n", "")) == [SearchReplace("x = 1\n", "")]


def test_worked_example_in_the_prompt_parses() -> None:
    for language in ("python", "cuda"):
        (h,) = parse_diffs(diff_example(language))
        assert h.search.strip() and h.replace.strip()


@pytest.mark.parametrize(
    ("reply", "exc", "reason"),
    [
        ("<<<<<<< SEARCH\na = 1\n>>>>>>> REPLACE\n", DiffParseError, "no '=======' line"),
        ("<<<<<<< SEARCH\na = 1\n=======\na = 2\na = 3", DiffParseError, "reply truncated: hunk 1"),
        ("<<<<<<< SEARCH\na = 1\n", DiffParseError, "ends inside its SEARCH part"),
        ("Sure! I think the code is fine as it is.", NoDiffBlocksError, "no SEARCH/REPLACE blocks"),
        ("<<<<<<< SEARCH\n\n=======\nx = 1\n>>>>>>> REPLACE\n", DiffParseError, "empty SEARCH"),
        ("a\n=======\nb\n>>>>>>> REPLACE\n", DiffParseError, "without a preceding"),
        (hunk("a\n", "b\n") + "<<<<<<< SEARCH\nc\n=======\n<<<<<<< SEARCH\n", DiffParseError, "not closed"),
    ],
)
def test_parse_errors_have_specific_one_line_reasons(reply: str, exc: type, reason: str) -> None:
    with pytest.raises(exc, match=reason) as info:
        parse_diffs(reply)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ applying


def test_apply_exact() -> None:
    out = apply_diffs(PROGRAM, parse_diffs(hunk("    total = 0\n", "    total = 0.0\n")))
    assert out == PROGRAM.replace("    total = 0\n", "    total = 0.0\n")


def test_apply_tolerates_trailing_whitespace_drift() -> None:
    code = PROGRAM.replace("    total = 0\n", "    total = 0   \n")
    out = apply_diffs(
        code,
        [SearchReplace("    total = 0\n    for x in values:\n", "    total = 1\n    for x in values:\n")],
    )
    assert "    total = 1\n    for x in values:\n" in out and "total = 0" not in out


def test_apply_indentation_drift_reindents_replacement() -> None:
    # The hunk is written flush-left; the code sits at 8 spaces inside a method.
    diffs = [SearchReplace("if x > 0:\n    y = x * 2\n    return y\n", "if x >= 0:\n    return x * 2\n")]
    out = apply_diffs(NESTED, diffs)
    assert "        if x >= 0:\n            return x * 2\n        # EVOLVE-BLOCK-END" in out


def test_apply_indentation_drift_the_other_way() -> None:
    diffs = [SearchReplace("            total += x * x\n", "            total += abs(x) ** 2\n")]
    out = apply_diffs(PROGRAM, diffs)
    assert "        total += abs(x) ** 2\n" in out


def test_apply_tolerates_blank_line_differences() -> None:
    diffs = [
        SearchReplace("    total = 0\n\n    for x in values:\n", "    total = 0.0\n    for x in values:\n")
    ]
    out = apply_diffs(PROGRAM, diffs)
    assert "    total = 0.0\n    for x in values:\n" in out


def test_apply_ambiguous_match_is_rejected() -> None:
    code = "# EVOLVE-BLOCK-START\nx = 1\ny = 2\nx = 1\n# EVOLVE-BLOCK-END\n"
    with pytest.raises(DiffApplyError, match=r"matches 2 places \(lines 2, 4\)"):
        apply_diffs(code, [SearchReplace("x = 1\n", "x = 3\n")])


def test_apply_prefers_the_only_in_block_match() -> None:
    code = "x = 1\n# EVOLVE-BLOCK-START\nx = 1\n# EVOLVE-BLOCK-END\n"
    assert apply_diffs(code, [SearchReplace("x = 1\n", "x = 2\n")]) == code.replace(
        "\nx = 1\n#", "\nx = 2\n#"
    )


def test_apply_no_match_names_the_first_search_line() -> None:
    with pytest.raises(DiffApplyError, match=r"SEARCH starting 'total = 42'\) not found"):
        apply_diffs(PROGRAM, [SearchReplace("\n    total = 42\n    pass\n", "x\n")])


def test_apply_rejects_edits_outside_blocks() -> None:
    with pytest.raises(DiffApplyError, match="edit touches code outside EVOLVE-BLOCK"):
        apply_diffs(PROGRAM, [SearchReplace("    return x + 1\n", "    return x + 2\n")])
    # Spanning a marker line is outside too.
    with pytest.raises(DiffApplyError, match="edit touches code outside EVOLVE-BLOCK"):
        apply_diffs(PROGRAM, [SearchReplace("# EVOLVE-BLOCK-START\ndef solve(values):\n", "def solve(v):\n")])
    # A replacement that smuggles in marker lines changes the layout.
    sneaky = SearchReplace(
        "    total = 0\n", "    total = 0\n# EVOLVE-BLOCK-END\nimport os\n# EVOLVE-BLOCK-START\n"
    )
    with pytest.raises(DiffApplyError, match="edit touches code outside EVOLVE-BLOCK"):
        apply_diffs(PROGRAM, [sneaky])
    # Without confinement the same edit is fine.
    out = apply_diffs(
        PROGRAM, [SearchReplace("    return x + 1\n", "    return x + 2\n")], confine_to_blocks=False
    )
    assert "return x + 2" in out


def test_apply_multiple_blocks_and_hunks_in_order() -> None:
    diffs = [
        SearchReplace("A = 1\n", "A = 5\n"),
        SearchReplace("C = 3\n", "C = 7\n"),
        SearchReplace("A = 5\n", "A = 6\n"),
    ]
    out = apply_diffs(TWO_BLOCKS, diffs)
    assert out == TWO_BLOCKS.replace("A = 1", "A = 6").replace("C = 3", "C = 7")


def test_apply_no_op_diff_is_an_error() -> None:
    with pytest.raises(DiffApplyError, match="diff made no change"):
        apply_diffs(PROGRAM, [SearchReplace("    total = 0\n", "    total = 0\n")])
    with pytest.raises(DiffApplyError, match="no SEARCH/REPLACE hunks"):
        apply_diffs(PROGRAM, [])


def test_apply_keeps_crlf_line_endings_and_missing_final_newline() -> None:
    code = PROGRAM.replace("\n", "\r\n")
    out = apply_diffs(code, parse_diffs(hunk("    total = 0\n", "    total = 0.0\n")))
    assert out == code.replace("total = 0\r\n", "total = 0.0\r\n")
    bare = "# EVOLVE-BLOCK-START\nx = 1\n# EVOLVE-BLOCK-END"
    assert apply_diffs(bare, [SearchReplace("x = 1\n", "x = 2\n")]) == bare.replace("x = 1", "x = 2")


def test_file_without_blocks_is_wholly_editable() -> None:
    out = apply_diffs("a = 1\nb = 2\n", [SearchReplace("b = 2\n", "b = 3\n")])
    assert out == "a = 1\nb = 3\n"


_line = st.text(alphabet=st.sampled_from(list("abcxyz =+()_:")), min_size=1, max_size=12).filter(
    lambda s: s.strip() == s and s != ""
)


def _occurrences(lines: list[str], seq: list[str]) -> int:
    return sum(lines[i : i + len(seq)] == seq for i in range(len(lines) - len(seq) + 1))


@settings(max_examples=150, deadline=None)
@given(
    before=st.lists(_line, max_size=5),
    target=st.lists(_line, min_size=1, max_size=4),
    after=st.lists(_line, max_size=5),
    new=st.lists(_line, min_size=1, max_size=4),
    indent=st.sampled_from(["", "    ", "\t"]),
)
def test_apply_then_reverse_restores_original(
    before: list[str], target: list[str], after: list[str], new: list[str], indent: str
) -> None:
    """Forward then reverse hunk is the identity, also when the block is indented and the
    hunks are written flush-left (indentation-tolerant matching + re-indentation)."""

    def block(lines: list[str]) -> str:
        return "# EVOLVE-BLOCK-START\n" + "".join(indent + s + "\n" for s in lines) + "# EVOLVE-BLOCK-END\n"

    search = "".join(s + "\n" for s in target)
    replace = "".join(s + "\n" for s in new)
    code = block([*before, *target, *after])
    changed = block([*before, *new, *after])
    assume(target != new)
    # SEARCH unique in the program, REPLACE unique in the result: otherwise ambiguity is correct.
    assume(_occurrences([*before, *target, *after], target) == 1)
    assume(_occurrences([*before, *new, *after], new) == 1)
    forward = apply_diffs(code, [SearchReplace(search, replace)])
    assert forward == changed
    assert apply_diffs(forward, [SearchReplace(replace, search)]) == code


# ------------------------------------------------------------------ rewrites


def test_rewrite_block_only_reply_is_spliced_and_reindented() -> None:
    reply = "New version:\n```python\nif x > 0:\n    return x * 3\n```\n"
    out = extract_rewrite(reply, NESTED)
    assert (
        "        if x > 0:\n            return x * 3\n        # EVOLVE-BLOCK-END\n        return 0\n" in out
    )
    assert outside_blocks_unchanged(NESTED, out)


def test_rewrite_full_program_with_changed_outside_is_rejected() -> None:
    new = PROGRAM.replace("total = 0", "total = 0.0").replace("return x + 1", "return x + 2")
    with pytest.raises(DiffApplyError, match="rewrite changes code outside EVOLVE-BLOCK.*return x \\+ 1"):
        extract_rewrite(f"```python\n{new}```", PROGRAM)


def test_rewrite_full_program_with_unchanged_outside_is_spliced() -> None:
    new = PROGRAM.replace("total = 0", "total = 0.0").replace("def main():", "def main():   ")
    out = extract_rewrite(f"```python\n{new}```", PROGRAM)
    assert out == PROGRAM.replace("total = 0", "total = 0.0")  # outside whitespace drift not taken


def test_rewrite_picks_last_large_block_not_trailing_example() -> None:
    old = f"```python\n{PROGRAM}```"
    new = f"```python\n{PROGRAM.replace('total = 0', 'total = 0.5')}```"
    usage = "```bash\npython prog.py\n```\n```python\nprint(solve([1]))\n```"
    out = extract_rewrite(f"Old:\n{old}\nNew:\n{new}\nUsage:\n{usage}\n", PROGRAM)
    assert "total = 0.5" in out


def test_rewrite_errors() -> None:
    with pytest.raises(DiffApplyError, match="no fenced code block"):
        extract_rewrite("just prose", PROGRAM)
    with pytest.raises(DiffApplyError, match="never closed"):
        extract_rewrite("```python\ndef solve(values):\n    return 1\n", PROGRAM)
    with pytest.raises(DiffApplyError, match="made no change"):
        extract_rewrite(f"```python\n{PROGRAM}```", PROGRAM)
    dropped = "\n".join(line for line in PROGRAM.split("\n") if "EVOLVE-BLOCK" not in line)
    with pytest.raises(DiffApplyError, match="without the EVOLVE-BLOCK markers"):
        extract_rewrite(f"```python\n{dropped.replace('total = 0', 'total = 1')}```", PROGRAM)
    with pytest.raises(DiffApplyError, match="2 EVOLVE-BLOCKs"):
        extract_rewrite("```python\nA = 9\n```", TWO_BLOCKS)


def test_rewrite_one_fence_per_block_and_blocks_only_view() -> None:
    out = extract_rewrite("```python\nA = 9\n```\nand\n```python\nC = 8\n```", TWO_BLOCKS)
    assert out == TWO_BLOCKS.replace("A = 1", "A = 9").replace("C = 3", "C = 8")
    view = "```python\n# EVOLVE-BLOCK-START first\nA = 4\n# EVOLVE-BLOCK-END\n# ...\n// EVOLVE-BLOCK-START second\nC = 5\n// EVOLVE-BLOCK-END\n```"
    assert extract_rewrite(view, TWO_BLOCKS) == TWO_BLOCKS.replace("A = 1", "A = 4").replace("C = 3", "C = 5")


def test_rewrite_without_blocks_takes_the_whole_program() -> None:
    assert extract_rewrite("```\nprint(2)\n```", "print(1)\n") == "print(2)\n"


# ------------------------------------------------------------------ apply_reply


def test_apply_reply_diff_success_and_failures_never_raise() -> None:
    ok = apply_reply(PROGRAM, "Plan: tweak.\n" + hunk("    total = 0\n", "    total = 1\n"))
    assert ok.kind == "diff" and ok.error is None and "total = 1" in (ok.code or "")
    bad = apply_reply(PROGRAM, hunk("    nope\n", "    x\n"))
    assert bad.code is None and bad.kind == "diff" and "'nope'" in (bad.error or "")
    truncated = apply_reply(PROGRAM, "<<<<<<< SEARCH\n    total = 0\n=======\n    tot")
    assert truncated.code is None and "truncated" in (truncated.error or "")
    assert apply_reply(PROGRAM, "").error == "empty reply"
    prose = apply_reply(PROGRAM, "I cannot help with that.")
    assert prose.code is None and "no SEARCH/REPLACE blocks" in (prose.error or "")


def test_apply_reply_falls_back_to_rewrite_and_back() -> None:
    full = PROGRAM.replace("total = 0", "total = 0.25")
    out = apply_reply(PROGRAM, f"Here is the full program:\n```python\n{full}```", mode="diff")
    assert out.kind == "rewrite" and out.code == full
    bad = apply_reply(PROGRAM, f"```python\n{full.replace('import math', 'import cmath')}```", mode="diff")
    assert bad.code is None and bad.kind == "rewrite" and "outside EVOLVE-BLOCK" in (bad.error or "")
    as_diff = apply_reply(
        PROGRAM, "```\n" + hunk("    total = 0\n", "    total = 2\n") + "```", mode="rewrite"
    )
    assert as_diff.kind == "diff" and "total = 2" in (as_diff.code or "")
    with pytest.raises(ValueError, match="unknown mutation mode"):
        apply_reply(PROGRAM, "x", mode="magic")
