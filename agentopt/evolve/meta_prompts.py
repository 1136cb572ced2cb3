"""Meta-prompt evolution (``llm.meta_prompts: true``): the system prompt evolves with the code.

An archive holds system-prompt variants (the role text; the reply-format rules are always
appended by :func:`agentopt.evolve.prompts.build_messages`, because the parser depends on
them). It starts with the default role plus a few hand-written variants. Each LLM proposal
picks a variant with a UCB bandit (:class:`~agentopt.evolve.bandit.ModelBandit`) whose
reward is 1 when the child beats its parent. Every ``llm.meta_prompt_interval`` iterations
the LLM is also shown the best-performing variants with their success rates and asked for
a new one, which joins the archive (displacing the weakest LLM-written variant when full;
hand-written seeds stay).

Determinism: variants are chosen from the archive as it was at the batch start (with the
iteration's RNG), and rewards and new variants are applied in iteration order when the
controller commits, so a resumed or replayed run evolves the same archive. The archive is
plain JSON in the store's ``state`` table.
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import BaseModel

from agentopt.evolve.bandit import ModelBandit
from agentopt.evolve.diff import find_code_fences
from agentopt.textsafe import fence, strip_control

__all__ = ["META_STATE", "MetaPromptArchive", "PromptVariant", "SEED_VARIANTS"]

META_STATE = "meta_prompts"
MIN_PULLS_TO_RETIRE = 3
_MIN_LEN, _MAX_LEN = 20, 4000

# Placeholders {language} and {goal} are filled per call (plain replace, so braces an LLM
# writes elsewhere in a variant are harmless).
SEED_VARIANTS: tuple[tuple[str, str], ...] = (
    (
        "default",
        "You are an expert {language} programmer improving a program through evolution. "
        "Each candidate you write is run and scored automatically; your goal: {goal}.",
    ),
    (
        "careful",
        "You are a meticulous {language} engineer. Make one small, well-reasoned change at a time "
        "that is likely to help {goal}, and never break code that already works.",
    ),
    (
        "bold",
        "You are an inventive {language} researcher. Instead of tweaking constants, look for a "
        "different algorithm or a structural change that could substantially {goal}.",
    ),
    (
        "analyst",
        "You are a performance analyst writing {language}. First work out from the metrics and the "
        "evaluator feedback what limits the score, then change exactly that; the goal: {goal}.",
    ),
)


class PromptVariant(BaseModel):
    id: str
    text: str
    origin: str  # "seed:<name>" or "llm"
    parents: list[str] = []
    iteration: int = 0


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


class MetaPromptArchive:
    """The variants, their bandit statistics, and the meta request that grows them."""

    def __init__(self, *, base_role: str | None = None, max_variants: int = 8) -> None:
        self.max_variants = max(2, max_variants)
        self.variants: dict[str, PromptVariant] = {}
        for i, (name, text) in enumerate(SEED_VARIANTS):
            if name == "default" and base_role:
                text = base_role  # the task's own system_message seeds the archive
            self.variants[f"v{i}"] = PromptVariant(id=f"v{i}", text=text, origin=f"seed:{name}")
        self._next = len(self.variants)
        self.bandit = ModelBandit(list(self.variants), cost_weight=0.0)

    # ------------------------------------------------------------------ choosing
    def choose(self, rng: random.Random) -> PromptVariant:
        return self.variants[self.bandit.choose(rng)]

    @staticmethod
    def render(variant: PromptVariant, *, language: str, goal: str) -> str:
        return variant.text.replace("{language}", language).replace("{goal}", goal)

    def observe(self, variant_id: str, *, improved: bool) -> None:
        self.bandit.observe(variant_id, improved=improved, cost_usd=0.0)

    # ------------------------------------------------------------------ statistics
    def _mean(self, vid: str) -> float:
        pulls = self.bandit.pulls.get(vid, 0)
        return self.bandit.rewards.get(vid, 0.0) / pulls if pulls else 0.0

    def ranking(self) -> list[dict[str, Any]]:
        """Variants best first (success rate, then pulls), as plain dicts for reports."""
        rows = [
            {
                "id": v.id,
                "origin": v.origin,
                "pulls": self.bandit.pulls.get(v.id, 0),
                "improved": int(self.bandit.rewards.get(v.id, 0.0)),
                "rate": round(self._mean(v.id), 4),
                "parents": list(v.parents),
                "iteration": v.iteration,
                "text": v.text,
            }
            for v in self.variants.values()
        ]
        rows.sort(key=lambda r: (-r["rate"], -r["pulls"], int(r["id"][1:])))
        return rows

    # ------------------------------------------------------------------ growing
    def proposal_messages(self, *, language: str, goal: str, task_description: str) -> tuple[list[dict[str, str]], list[str]]:
        """Chat messages asking for a new variant, and the ids of the variants shown to it."""
        shown = [r for r in self.ranking() if r["pulls"] > 0][:2] or self.ranking()[:2]
        parts = [
            "An automated system improves programs by asking an LLM for code changes. The system prompt "
            "below decides the LLM's role and strategy; the placeholders {language} and {goal} are filled in "
            "per call. Here are the best-performing system prompts so far, with how often the program "
            "they produced beat its parent:",
        ]
        for row in shown:
            parts.append(f"Prompt {row['id']} ({row['improved']}/{row['pulls']} improved):")
            parts.append(fence(strip_control(row["text"]), "text"))
        parts.append(f"The task: {strip_control(task_description)[:1500] or '(no description)'}")
        parts.append(f"Language: {language}. Goal: {goal}.")
        parts.append(
            "Write ONE new system prompt (at most 120 words) that should lead to more improvements, combining "
            "what works above with a fresh idea. Do not describe the reply format; it is added separately. "
            "Reply with the prompt alone inside one ```text fenced block."
        )
        messages = [
            {"role": "system", "content": "You write system prompts for code-improving LLMs."},
            {"role": "user", "content": "\n\n".join(parts)},
        ]
        return messages, [row["id"] for row in shown]

    @staticmethod
    def parse_proposal(reply: str) -> tuple[str | None, str | None]:
        """``(variant text, None)`` from a meta reply, or ``(None, why it is unusable)``."""
        fences = find_code_fences(reply or "")
        text = fences[0].body if fences else (reply or "")
        text = strip_control(text).strip()
        if len(text) < _MIN_LEN:
            return None, "meta-prompt reply holds no usable prompt"
        if len(text) > _MAX_LEN:
            return None, f"meta-prompt reply is {len(text)} chars, over {_MAX_LEN}"
        return text, None

    def add(self, text: str, *, parents: list[str], iteration: int) -> PromptVariant | None:
        """Add a proposed variant; None when it duplicates one or the archive has no room."""
        if any(_norm(v.text) == _norm(text) for v in self.variants.values()):
            return None
        if len(self.variants) >= self.max_variants:
            retirable = [
                vid
                for vid, v in self.variants.items()
                if v.origin == "llm" and self.bandit.pulls.get(vid, 0) >= MIN_PULLS_TO_RETIRE
            ]
            if not retirable:
                return None
            worst = min(retirable, key=lambda vid: (self._mean(vid), -int(vid[1:])))
            del self.variants[worst]
            self.bandit.remove(worst)
        vid = f"v{self._next}"
        self._next += 1
        variant = PromptVariant(id=vid, text=text, origin="llm", parents=parents, iteration=iteration)
        self.variants[vid] = variant
        self.bandit.add(vid)
        return variant

    # ------------------------------------------------------------------ persistence
    def to_state(self) -> dict[str, Any]:
        return {
            "next": self._next,
            "variants": [v.model_dump() for v in self.variants.values()],
            "bandit": self.bandit.to_state(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        if not state or not state.get("variants"):
            return
        self.variants = {v["id"]: PromptVariant.model_validate(v) for v in state["variants"]}
        self._next = int(state.get("next", len(self.variants)))
        self.bandit = ModelBandit(list(self.variants), cost_weight=0.0)
        self.bandit.load_state(state.get("bandit", {}))
