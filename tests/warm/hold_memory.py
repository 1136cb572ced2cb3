"""Touch AGENTOPT_TEST_HOLD_MB MiB (written, so resident) and return: sets the job's peak memory."""

import os


def run():
    block = bytearray(b"\x01") * (int(os.environ.get("AGENTOPT_TEST_HOLD_MB", "0")) << 20)
    return {"score": float(len(block) >> 20)}
