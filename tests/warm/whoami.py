"""Report what the job sees of its own process (pid 1 of its namespace, uid nobody), its RNG state,
and whether its work dir and input files are its own: the work dir starts empty but for tmp/ (a
file left by an earlier job would show), and the input files cannot be written."""

import os
import random


def run():
    print("whoami-output")
    fresh = sorted(os.listdir(".")) == ["tmp"]
    with open("left-by-a-job", "w") as f:
        f.write("x")
    try:
        with open(os.path.abspath(__file__), "a") as f:
            f.write("# changed by the job\n")
        inputs_writable = 1.0
    except OSError:
        inputs_writable = 0.0
    return {"score": 1.0, "pid": os.getpid(), "uid": os.getuid(), "rand": random.random(), "cwd": os.getcwd(),
            "fresh_workdir": float(fresh), "inputs_writable": inputs_writable}
