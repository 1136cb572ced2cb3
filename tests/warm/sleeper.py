"""Hang in a child process carrying a marker, so a test can see whether the job outlives its controller."""

import os
import subprocess
import sys
import time


def run():
    marker = os.environ["HOSTILE_MARKER"]
    subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(120)  # {marker}"], start_new_session=True)
    time.sleep(120)
    return 1.0
