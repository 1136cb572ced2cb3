"""Fork 4 children that each touch 768 MiB: a per-process cap allows each, a per-job cap must not."""

import os

MIB = 1 << 20


def run():
    pids = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            try:
                block = bytearray(b"\x01") * (768 * MIB)  # written, so really resident
                os.write(1, b"child holds %d MiB\n" % (len(block) // MIB))
                import time

                time.sleep(2.0)
            except MemoryError:
                os._exit(3)
            os._exit(0)
        pids.append(pid)
    ok = 0
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        ok += os.waitstatus_to_exitcode(status) == 0
    return {"score": float(ok)}
