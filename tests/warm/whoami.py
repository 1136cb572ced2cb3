"""Report what the job sees of its own process (pid 1 of its namespace, uid nobody) and RNG state."""

import os
import random


def run():
    print("whoami-output")
    return {"score": 1.0, "pid": os.getpid(), "uid": os.getuid(), "rand": random.random(), "cwd": os.getcwd()}
