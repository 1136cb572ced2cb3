"""Prompt-optimization task: an LLM answers arithmetic word problems; the instructions are a Param.

The graph per example is build_messages -> ask_model -> parse_answer, so OptoPrime sees the
prompt, the model's reply, what the parser extracted, and the expected answer.
"""

from __future__ import annotations

import re

from agentopt.trace import Module, Param, trace


class Solver(Module):
    def __init__(self) -> None:
        self.instructions = Param(
            "Answer the question.",
            description="system prompt given to the model before each word problem",
        )


def build() -> Solver:
    return Solver()


@trace
def build_messages(instructions: str, question: str) -> list[dict]:
    return [{"role": "system", "content": instructions}, {"role": "user", "content": question}]


@trace
def ask_model(messages: list[dict], ctx) -> str:
    """Send the messages to the configured LLM and return its reply text."""
    return ctx.complete(messages, temperature=0.0)


@trace
def parse_answer(reply: str) -> int | None:
    """The last integer in the reply (None when there is none)."""
    numbers = re.findall(r"-?\d+", reply.replace(",", ""))
    return int(numbers[-1]) if numbers else None


def run(module: Solver, example: dict, ctx):
    messages = build_messages(module.instructions, example["question"])
    return parse_answer(ask_model(messages, ctx))


def metric(answer: int | None, example: dict) -> dict:
    if answer == example["answer"]:
        return {"score": 1.0, "text": "correct"}
    return {"score": 0.0, "text": f"wrong: expected {example['answer']}, got {answer!r}"}
