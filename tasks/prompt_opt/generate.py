"""Generate problems.jsonl: 40 arithmetic word problems with integer answers (seeded).

    python tasks/prompt_opt/generate.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

NAMES = ["Ann", "Ben", "Chloe", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jo"]
ITEMS = ["apples", "pencils", "stickers", "marbles", "cookies", "stamps", "shells", "cards"]


def problem(rng: random.Random) -> dict:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    kind = rng.randrange(4)
    if kind == 0:
        boxes, per, eaten = rng.randint(2, 9), rng.randint(3, 12), rng.randint(1, 9)
        q = f"{name} has {boxes} boxes with {per} {item} each and gives away {eaten}. How many {item} are left?"
        return {"question": q, "answer": boxes * per - eaten}
    if kind == 1:
        a, b, c = rng.randint(10, 60), rng.randint(5, 40), rng.randint(2, 5)
        q = f"{name} had {a} {item}, found {b} more, then shared all of them equally among {c} friends " \
            f"and kept the remainder. How many {item} did {name} keep?"
        return {"question": q, "answer": (a + b) % c}
    if kind == 2:
        price, count, paid = rng.randint(2, 9), rng.randint(2, 8), 100
        q = f"{name} buys {count} {item} at {price} dollars each and pays with {paid} dollars. " \
            f"How much change does {name} get?"
        return {"question": q, "answer": paid - price * count}
    days, per_day, lost = rng.randint(3, 10), rng.randint(2, 9), rng.randint(1, 5)
    q = f"{name} collects {per_day} {item} every day for {days} days but loses {lost} {item} on each of " \
        f"the last two days. How many {item} does {name} have?"
    return {"question": q, "answer": days * per_day - 2 * lost}


def main() -> None:
    rng = random.Random(2024)
    out = Path(__file__).with_name("problems.jsonl")
    with out.open("w", encoding="utf-8") as fh:
        for i in range(40):
            fh.write(json.dumps({"id": i, **problem(rng)}) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
