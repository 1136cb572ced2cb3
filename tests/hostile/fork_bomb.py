"""Every process forks as fast as it can, forever. Must be stopped by the pids limit."""

import os
import time


def run():
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.01)
