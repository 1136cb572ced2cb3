import sys


def _down(n):
    return _down(n + 1) + 1


def run():
    sys.setrecursionlimit(10**7)
    return _down(0)
