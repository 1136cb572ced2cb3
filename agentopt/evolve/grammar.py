"""A llama.cpp GBNF grammar for SEARCH/REPLACE replies, so small local models write applicable diffs.

It lives next to the prompts because it encodes the same reply format the prompts ask for
(:mod:`agentopt.evolve.diff` parses it); the LLM layer only carries the grammar text through
the request's extra body and knows nothing about EVOLVE-BLOCKs.
"""

from __future__ import annotations

from typing import Any

from agentopt.blocks import BlockError, find_blocks
from agentopt.llm.local_server import is_local_model
from agentopt.task import ModelSpec

__all__ = ["local_request_kwargs", "search_replace_grammar"]


def _gbnf_literal(text: str) -> str:
    escaped = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )
    return f'"{escaped}"'


def _unique_run_length(program: list[str], run: list[str]) -> int | None:
    """Fewest leading lines of ``run`` that occur exactly once in ``program`` (None: never unique)."""
    for length in range(1, len(run) + 1):
        head = run[:length]
        hits = sum(program[j : j + length] == head for j in range(len(program) - length + 1))
        if hits == 1:
            return length
    return None


def search_replace_grammar(code: str, *, max_hunks: int = 1, max_replace_lines: int | None = None) -> str | None:
    """A GBNF grammar for SEARCH/REPLACE replies whose SEARCH part is always applicable.

    Small models rarely copy lines verbatim, so the SEARCH part is constrained to a run of
    consecutive lines of the parent's EVOLVE-BLOCK bodies (or of the whole program when it has
    no blocks) that is unique in the program; the REPLACE part is free text whose lines cannot
    start a marker, a code fence or a comment, at most ``max_replace_lines`` lines (default: the evolvable
    line count + 2) of at most 120 characters. Without that bound a small model drifts into
    prose after the code and never writes the closing ``>>>>>>> REPLACE`` line before
    max_tokens. Returns None when there are no lines to search (nothing useful to constrain).
    """
    lines = code.replace("\r\n", "\n").split("\n")
    try:
        blocks = find_blocks(code.replace("\r\n", "\n"))
    except BlockError:
        blocks = []
    if blocks:
        regions = [lines[b.start_line : b.end_line - 1] for b in blocks]  # bodies without marker lines
    else:
        regions = [lines]
    all_lines = [line.rstrip() for line in lines]
    rules: list[str] = []
    starts: list[str] = []
    n = 0
    for region in regions:
        # s<k> = line k, optionally followed by s<k+1> (the next line of the same region); a
        # SEARCH may start at line k only with the shortest run from k that is unique in the
        # program (t<k>), because an ambiguous SEARCH is rejected by apply_diffs.
        names = [f"s{n + i}" for i in range(len(region))]
        for i, line in enumerate(region):
            nxt = f" {names[i + 1]}?" if i + 1 < len(region) else ""
            rules.append(f"{names[i]} ::= {_gbnf_literal(line + chr(10))}{nxt}")
        for i, line in enumerate(region):
            if not line.strip():
                continue
            length = _unique_run_length(all_lines, [x.rstrip() for x in region[i:]])
            if length is None:
                continue
            run = " ".join(_gbnf_literal(x + "\n") for x in region[i : i + length])
            tail = f" {names[i + length]}?" if i + length < len(region) else ""
            rules.append(f"t{n + i} ::= {run}{tail}")
            starts.append(f"t{n + i}")
        n += len(region)
    if not starts:
        return None
    if max_replace_lines is None:
        max_replace_lines = min(60, sum(len(r) for r in regions) + 2)
    hunk_rep = "hunk " + " ".join(["hunk?"] * (max_hunks - 1))
    head = [
        f"root ::= {hunk_rep.strip()}",
        'hunk ::= "<<<<<<< SEARCH\\n" search "=======\\n" replace ">>>>>>> REPLACE\\n"',
        "search ::= " + " | ".join(starts),
        f"replace ::= rline{{0,{max_replace_lines}}}",
        # A line may not start (after indentation) with a marker, a fence or a comment: small
        # models otherwise re-emit "# EVOLVE-BLOCK-START" lines, which corrupt the program.
        'rline ::= [ \\t]{0,40} [^ \\t#<=>`\\n] [^\\n]{0,119} "\\n" | "\\n"',
    ]
    return "\n".join(head + rules) + "\n"


def local_request_kwargs(model: ModelSpec, parent_code: str, mode: str, *, grammar: bool = False) -> dict[str, Any]:
    """Extra ``LLMClient.complete`` kwargs for a local model: the SEARCH/REPLACE grammar.

    Empty unless ``grammar`` is set, the model is ``local/...`` and ``mode`` is ``diff``:
    only llama.cpp understands the ``grammar`` field, which goes through the request's
    extra body.
    """
    if not grammar or mode != "diff" or not is_local_model(model.name):
        return {}
    text = search_replace_grammar(parent_code)
    return {"extra_body": {"grammar": text}} if text else {}
