import time

time.sleep(30)


def run():
    return 1.0


def solve(xs):
    return sorted(xs)
