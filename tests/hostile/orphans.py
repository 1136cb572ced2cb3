"""Leave a setsid'd child and a double-forked grandchild behind, then return normally."""

import os
import subprocess
import sys


def run():
    marker = os.environ["HOSTILE_MARKER"]
    sleeper = [sys.executable, "-c", f"import time; time.sleep(300)  # {marker}"]
    subprocess.Popen(sleeper, start_new_session=True)
    if os.fork() == 0:  # double fork: the grandchild is re-parented away from us
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, sleeper)
        os._exit(0)
    os.wait()
    return 1.0
