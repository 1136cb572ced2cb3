"""Orphans plus a hang: the timeout path must kill them too."""

from orphans import run as _leave_orphans


def run():
    _leave_orphans()
    while True:
        pass
