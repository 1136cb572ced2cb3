"""Print 1 GB to stdout (which the runner points at the captured, capped stderr)."""

import os


def run():
    chunk = b"x" * (1 << 20)
    for _ in range(1024):
        os.write(1, chunk)
    return 1.0
