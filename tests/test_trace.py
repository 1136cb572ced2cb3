"""Recorder, graph, backward, render and Module tests for agentopt.trace."""

from __future__ import annotations

import asyncio
import threading

import networkx as nx
import pytest

from agentopt.trace import (
    ErrorNode,
    InvalidValue,
    Module,
    ModuleStateError,
    Node,
    OpNode,
    Param,
    TraceError,
    ancestors,
    backward,
    minimal_subgraphs,
    no_trace,
    node,
    record,
    render_text,
    to_dot,
    to_html,
    to_networkx,
    trace,
)
from agentopt.trace.feedback import Feedback


@trace
def fmt(prompt: str, question: str) -> str:
    return f"{prompt} | {question}"


@trace
def shout(text: str) -> str:
    return text.upper()


@trace
def join(a: str, b: str) -> str:
    return a + b


def test_chain_graph_shape_and_networkx() -> None:
    prompt = Param("be brief", name="prompt")
    q = node("2+2?", name="q")
    out = shout(fmt(prompt, q))
    assert isinstance(out, OpNode) and out.value == "BE BRIEF | 2+2?"
    g = to_networkx(out)
    assert isinstance(g, nx.DiGraph)
    assert g.number_of_nodes() == 4 and g.number_of_edges() == 3
    fmt_node = out.parents[0]
    assert set(g.predecessors(fmt_node.id)) == {prompt.id, q.id}
    assert g.nodes[prompt.id]["kind"] == "param" and g.nodes[out.id]["op"] == "shout"
    assert nx.is_directed_acyclic_graph(g)


def test_diamond_and_minimal_subgraph_excludes_unrelated_branch() -> None:
    p = Param("x", name="p")
    other = Param("y", name="other")
    left = shout(p)
    right = fmt(p, "const")
    side = shout(other)  # not an ancestor of out
    out = join(left, right)
    order = ancestors(out)
    assert order[-1] is out and order.index(p) < order.index(left) < order.index(out)
    assert side not in order
    sub = minimal_subgraphs(out)
    assert set(sub) == {p}
    assert set(sub[p]) == {p, left, right, out}


def test_dynamic_graph_differs_per_input() -> None:
    a, b = Param("A", name="a"), Param("B", name="b")

    @trace
    def route(flag: bool) -> str:
        return a.value if flag else b.value  # the read Param becomes a parent

    yes, no = route(True), route(False)
    assert a in yes.parents and b not in yes.parents
    assert b in no.parents and a not in no.parents


def test_nested_calls_return_plain_values_and_link_params() -> None:
    prompt = Param("hint", name="prompt")

    @trace
    def pipeline(question: str) -> str:
        message = fmt(prompt.value, question)  # nested: returns a str, recorded as inner node
        assert isinstance(message, str)
        return shout(message)

    out = pipeline(node("q1"))
    assert out.value == "HINT | Q1"
    assert prompt in out.parents
    assert [n.op.name for n in out.inner] == ["fmt", "shout"]
    inner_fmt, inner_shout = out.inner
    assert inner_fmt in inner_shout.parents  # linked through the plain value's identity
    g = to_networkx(out, include_inner=True)
    assert g.nodes[inner_shout.id]["inside"] == out.id


def test_methods_read_params_through_self() -> None:
    class Agent(Module):
        def __init__(self) -> None:
            self.system = Param("You are terse.", name="system")

        @trace
        def answer(self, q: str) -> str:
            return f"{self.system} {q}"

    agent = Agent()
    out = agent.answer("hello")
    assert out.value == "You are terse. hello"
    assert agent.system in out.parents


def test_exception_becomes_error_node_and_trace_error() -> None:
    p = Param(0, name="divisor")

    @trace
    def divide(x: int, d: int) -> float:
        return x / d

    with pytest.raises(TraceError) as info:
        divide(1, p)
    err = info.value
    assert isinstance(err.node, ErrorNode)
    assert isinstance(err.exception, ZeroDivisionError)
    assert "ZeroDivisionError" in err.node.traceback and "x / d" in err.node.traceback
    assert p in err.node.parents
    prop = backward(err)  # the exception itself is the feedback
    assert prop.feedback.error and p in prop.subgraphs
    assert "ZeroDivisionError" in render_text(prop.union(), prop.output, prop.feedback)


def test_nested_exception_keeps_its_type_inside_and_links_outer_error() -> None:
    @trace
    def inner(x: int) -> int:
        raise ValueError(f"bad {x}")

    caught: list[str] = []

    @trace
    def handles(x: int) -> str:
        try:
            inner(x)
        except ValueError as exc:  # user code still sees its own exception type
            caught.append(str(exc))
        return "ok"

    assert handles(1).value == "ok" and caught == ["bad 1"]

    @trace
    def outer(x: int) -> int:
        return inner(x) + 1

    with pytest.raises(TraceError) as info:
        outer(node(3))
    outer_err = info.value.node
    inner_errs = [p for p in outer_err.parents if isinstance(p, ErrorNode)]
    assert len(inner_errs) == 1 and inner_errs[0].op.name == "inner"
    assert isinstance(info.value.exception, ValueError)


def test_threads_record_separately() -> None:
    results: dict[int, list[Node]] = {}
    barrier = threading.Barrier(2)

    def work(k: int) -> None:
        with record() as nodes:
            barrier.wait()
            x = node(k)
            for _ in range(50):
                x = shout(fmt(str(k), x))
        results[k] = nodes

    threads = [threading.Thread(target=work, args=(k,)) for k in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in (1, 2):
        assert len(results[k]) == 100
        assert all(str(k) in n.value for n in results[k])


def test_async_tasks_record_separately_and_async_functions_are_traced() -> None:
    p = Param("P", name="p")

    @trace
    async def slow_echo(x: str, delay: float) -> str:
        await asyncio.sleep(delay)
        return f"{p.value}:{x}"

    async def job(tag: str, delay: float) -> tuple[Node, list[Node]]:
        with record() as nodes:
            out = await slow_echo(tag, delay)
            await asyncio.sleep(0)
            return out, nodes

    async def main() -> list[tuple[Node, list[Node]]]:
        return list(await asyncio.gather(job("a", 0.02), job("b", 0.0)))

    (out_a, nodes_a), (out_b, nodes_b) = asyncio.run(main())
    assert out_a.value == "P:a" and out_b.value == "P:b"
    assert nodes_a == [out_a] and nodes_b == [out_b]
    assert p in out_a.parents and p in out_b.parents


def test_param_validation() -> None:
    lr = Param(0.1, bounds=(0.0, 1.0), name="lr")
    with pytest.raises(InvalidValue, match="outside bounds"):
        lr.value = 2.0
    assert lr.set("0.5") == 0.5
    n = Param(3, bounds=(1, 10), name="n")
    with pytest.raises(InvalidValue, match="integer"):
        n.set(2.5)
    c = Param(8, choices=[4, 8, 16], name="width")
    assert c.set("16") == 16
    with pytest.raises(InvalidValue, match="not one of"):
        c.set(5)
    t = Param("hi", name="t")
    with pytest.raises(InvalidValue, match="expects text"):
        t.set({"a": 1})
    with pytest.raises(InvalidValue):
        Param(True)
    with pytest.raises(InvalidValue, match="finite"):
        lr.set(float("nan"))


def test_trainable_function_code_param_is_compiled_and_validated() -> None:
    @trace(trainable=True)
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a - b

    assert add(2, 3).value == -1
    assert add.code is not None and add.code.param_kind == "code"
    assert "@trace" not in add.code.value and "def add(a: int, b: int)" in add.code.value
    add.code.set("def add(a, b):\n    return a + b\n")
    out = add(2, 3)
    assert out.value == 5 and add.code in out.parents
    with pytest.raises(InvalidValue, match="signature"):
        add.code.set("def add(a):\n    return a\n")
    with pytest.raises(InvalidValue, match="compile"):
        add.code.set("def add(a, b) return a")
    with pytest.raises(InvalidValue, match="must define function 'add'"):
        add.code.set("def plus(a, b):\n    return a + b\n")
    assert add(1, 1).value == 2  # the last valid code is still in use


def test_backward_feedback_kinds_and_accumulation() -> None:
    p = Param("v", name="p")
    out = shout(p)
    for fb, expect in [("too loud", Feedback(text="too loud")), (0.5, Feedback(score=0.5)),
                       ({"score": 1, "text": "ok"}, Feedback(score=1.0, text="ok"))]:
        assert backward(out, fb).feedback == expect
    assert len(p.feedback) == 3 and p.feedback[0].nodes == [p, out]
    p.zero_feedback()
    assert p.feedback == []
    assert backward(out, ValueError("boom")).feedback.text == "ValueError: boom"
    with pytest.raises(InvalidValue):
        backward(out, {"scor": 1})
    with pytest.raises(InvalidValue):
        backward("not a node", "x")  # type: ignore[arg-type]


def test_render_text_sections_and_budget() -> None:
    prompt = Param("Answer with a number.", name="prompt", description="system prompt")
    big = node("x" * 50_000, name="document")
    out = shout(fmt(prompt, big))
    prop = backward(out, {"score": 0, "text": "expected 4"})
    text = prop.render(budget_tokens=800)
    for section in ("#Code", "#Definitions", "#Params", "#Inputs", "#Outputs", "#Feedback"):
        assert section in text
    assert "fmt0 = fmt(prompt=prompt, question=document)" in text
    assert "expected 4" in text and "Answer with a number." in text
    assert len(text) <= 800 * 4 and "chars]" in text


def test_render_huge_chain_stays_bounded() -> None:
    p = Param(0, bounds=(-1e9, 1e9), name="start")

    @trace
    def inc(x: int) -> int:
        return x + 1

    y = inc(p)
    for _ in range(3000):
        y = inc(y)
    prop = backward(y, 1.0)
    text = prop.render(budget_tokens=500)
    assert len(text) <= 2000 and "nodes elided" in text and "start" in text


def test_dot_and_html_escape_values() -> None:
    evil = node('<script>alert("x")</script>', name="evil")
    out = shout(evil)
    page = to_html(out, feedback="<b>bad</b>")
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;bad&lt;/b&gt;" in page
    assert page.startswith("<!DOCTYPE html>")
    dot = to_dot(out)
    assert dot.startswith("digraph") and f"n{evil.id} -> n{out.id};" in dot
    assert '\\"x\\"' in dot  # quotes escaped inside dot labels


def test_no_trace_runs_plain() -> None:
    with no_trace():
        assert shout(node("a")) == "A"


class Inner(Module):
    def __init__(self) -> None:
        self.style = Param("formal", choices=["formal", "casual"], name="style")


class Agent(Module):
    def __init__(self) -> None:
        self.prompt = Param("Line one\nline two", name="prompt")
        self.temperature = Param(0.7, bounds=(0.0, 2.0))
        self.inner = Inner()
        self.tools = [Param("search", name="tool0")]
        self._private = Param("hidden")


@trace(trainable=True)
def scorer(x: int) -> int:
    return x * 2


def test_module_discovery_and_save_load_roundtrip(tmp_path) -> None:
    agent = Agent()
    agent.fn = scorer
    names = [n for n, _ in agent.named_parameters()]
    assert names == ["prompt", "temperature", "inner.style", "tools.0", "fn"]
    agent.prompt.set("New prompt\nwith two lines")
    agent.temperature.set(1.25)
    agent.inner.style.set("casual")
    scorer.code.set("def scorer(x):\n    return x * 3\n")
    agent.save(tmp_path / "state")
    assert (tmp_path / "state" / "prompt.txt").read_text() == "New prompt\nwith two lines"
    assert (tmp_path / "state" / "fn.py").read_text().startswith("def scorer(x):")
    manifest = (tmp_path / "state" / "params.yaml").read_text()
    assert "temperature: 1.25" in manifest and "inner.style: casual" in manifest

    fresh = Agent()
    fresh.fn = scorer
    scorer.code.reset()
    assert scorer(2).value == 4
    fresh.load(tmp_path / "state")
    assert fresh.state_dict()["prompt"] == "New prompt\nwith two lines"
    assert fresh.temperature.value == 1.25 and fresh.inner.style.value == "casual"
    assert scorer(2).value == 6

    (tmp_path / "state" / "params.yaml").write_text(manifest.replace("1.25", "5.0"))
    with pytest.raises(ModuleStateError, match="outside bounds"):
        fresh.load(tmp_path / "state")
    with pytest.raises(ModuleStateError, match="not found"):
        fresh.load(tmp_path / "missing")
    scorer.code.reset()


@trace
def concat_all(parts: list[str]) -> str:
    return "".join(parts)


def test_container_arguments_link_their_nodes() -> None:
    a, b = node("a"), node("b")
    out = concat_all([a, "-", b])
    assert out.value == "a-b" and out.parents == (a, b)


def test_docs_example_runs() -> None:
    """Every ```python block of docs/trace.md runs as written (```py blocks need an LLM)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs/trace.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    assert len(blocks) >= 3
    namespace: dict = {"__name__": "docs_trace"}
    exec(compile("\n".join(blocks), "docs/trace.md", "exec"), namespace)
