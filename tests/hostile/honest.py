"""A well-behaved candidate: the 'next normal job' after every hostile one."""


def run():
    return 1.0


def solve(xs):
    return sorted(xs)
