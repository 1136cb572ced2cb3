import os


def run():
    os._exit(7)
