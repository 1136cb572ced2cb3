"""Generate data.csv: a small nonlinear regression problem (seeded; run once, output committed).

    python tasks/hyperparam/generate_data.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_ROWS, N_FEATURES, SEED = 360, 6, 7


def main() -> None:
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(N_ROWS, N_FEATURES))
    y = np.sin(2.0 * x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] - 0.3 * x[:, 3] ** 2 + 0.1 * rng.normal(size=N_ROWS)
    header = ",".join([f"x{i}" for i in range(N_FEATURES)] + ["y"])
    rows = np.column_stack([x, y])
    out = Path(__file__).with_name("data.csv")
    np.savetxt(out, rows, delimiter=",", header=header, comments="", fmt="%.5f")
    print(f"wrote {out} ({N_ROWS} rows)")


if __name__ == "__main__":
    main()
