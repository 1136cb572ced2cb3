"""The candidate file of a traced workflow evolved by ``agentopt evolve``: one EVOLVE-BLOCK per Param.

A candidate is an *assignment of Param values*, written as a small Python file so the
evolution engine can treat it like any other program: LLM SEARCH/REPLACE diffs edit the
blocks, the symbolic mutator perturbs the numeric literals in them, and code hashing
deduplicates equal assignments. Each block is labelled with the Param's dotted name::

    # learning_rate: float in [0.0001, 0.5] (log scale) - gradient step size
    # EVOLVE-BLOCK-START learning_rate
    learning_rate = 0.0001
    # EVOLVE-BLOCK-END

Text, number and choice Params are a single ``identifier = <literal>`` assignment; a code
Param's block is its function source (helpers may be added next to it). The constraint
comment sits *outside* the block, so a diff cannot edit it away.

Both directions live here because they must agree: :func:`render_candidate` runs on the host
when the task is loaded, :func:`parse_candidate` runs in the sandbox. Parsing never executes
the candidate: values are read with :func:`ast.literal_eval`.
"""

from __future__ import annotations

import ast
import keyword
import re
from dataclasses import dataclass
from typing import Any

from agentopt.blocks import EVOLVE_END, EVOLVE_START, BlockError, find_blocks, is_marker_line
from agentopt.errors import AgentoptError

_NOT_IDENT = re.compile(r"\W+")


class CandidateFormatError(AgentoptError, ValueError):
    """A candidate file whose blocks cannot be read as Param values (the candidate's fault)."""


@dataclass(frozen=True)
class BlockSpec:
    """What the host writes for one Param: its dotted name, kind, value and a comment line."""

    name: str
    kind: str
    value: Any
    comment: str = ""


def identifier(name: str) -> str:
    """A Python identifier for a dotted Param name (``agent.prompts.0`` -> ``agent_prompts_0``)."""
    ident = _NOT_IDENT.sub("_", name).strip("_") or "param"
    if ident[0].isdigit():
        ident = "p_" + ident
    if keyword.iskeyword(ident) or keyword.issoftkeyword(ident):
        ident += "_"
    return ident


def _literal(value: Any) -> str:
    """Source text that :func:`ast.literal_eval` turns back into exactly ``value``.

    Text is written as a triple-quoted string when that round-trips (readable multi-line
    prompts in diffs); otherwise, e.g. with backslashes or a line that looks like a block
    marker, as ``repr`` on one line.
    """
    if isinstance(value, str):
        safe = ('"""' not in value and "\\" not in value and "\r" not in value
                and not value.endswith('"') and not any(is_marker_line(ln) for ln in value.splitlines()))
        text = f'"""{value}"""' if safe else repr(value)
    else:
        text = repr(value)
    try:
        back = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        back = _Unequal
    if back != value or type(back) is not type(value):
        raise CandidateFormatError(f"value {text[:60]} is not a Python literal that can be written into a block")
    return text


class _Unequal:
    """Sentinel that equals nothing (a value that did not survive the literal round trip)."""


def render_candidate(blocks: list[BlockSpec], header: str) -> str:
    """The candidate program for the given Params (the initial program of the evolution)."""
    out = [f"# {line}".rstrip() for line in header.splitlines()]
    for spec in blocks:
        out.append("")
        if spec.comment:
            out += [f"# {line}".rstrip() for line in spec.comment.splitlines()]
        out.append(f"# {EVOLVE_START} {spec.name}")
        if spec.kind == "code":
            code = str(spec.value).rstrip("\n")
            if any(is_marker_line(ln) for ln in code.splitlines()):
                raise CandidateFormatError(f"code Param {spec.name!r} contains an {EVOLVE_START}/END comment line")
            out.append(code)
        else:
            out.append(f"{identifier(spec.name)} = {_literal(spec.value)}")
        out.append(f"# {EVOLVE_END}")
    return "\n".join(out) + "\n"


def parse_candidate(code: str, kinds: dict[str, str]) -> dict[str, Any]:
    """Read the value of every Param named in ``kinds`` (dotted name -> kind) from ``code``.

    Raises :class:`CandidateFormatError` with one line naming the block when a block is
    missing, does not parse, or does not assign a literal to its identifier.
    """
    try:
        blocks = {b.label: b for b in find_blocks(code)}
    except BlockError as err:
        raise CandidateFormatError(str(err)) from None
    values: dict[str, Any] = {}
    for name, kind in kinds.items():
        block = blocks.get(name)
        if block is None:
            raise CandidateFormatError(f"no EVOLVE-BLOCK labelled {name!r} (one block per Param is required)")
        if kind == "code":
            values[name] = block.text
            continue
        values[name] = _assigned_literal(block.text, identifier(name), name)
    return values


def _assigned_literal(text: str, ident: str, name: str) -> Any:
    try:
        tree = ast.parse(text)
    except SyntaxError as err:
        raise CandidateFormatError(f"EVOLVE-BLOCK {name!r} does not parse: {err.msg} (line {err.lineno})") from None
    value_node: ast.expr | None = None
    for stmt in tree.body:  # the last assignment wins, like running the block would
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target = stmt.targets[0]
            if isinstance(target, ast.Name) and target.id == ident:
                value_node = stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == ident:
            value_node = stmt.value
    if value_node is None:
        raise CandidateFormatError(f"EVOLVE-BLOCK {name!r} must assign `{ident} = <value>`")
    try:
        return ast.literal_eval(value_node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise CandidateFormatError(
            f"EVOLVE-BLOCK {name!r}: the value of {ident} must be a plain literal (number, string, ...)"
        ) from None
