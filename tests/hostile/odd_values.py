"""Values JSON cannot hold: the runner must stringify them, the host must not score them."""


class Weird:
    def __str__(self):
        return "weird-object"


def run():
    return {"score": 0.5, "obj": Weird(), "nan_metric": float("nan"), "inf_metric": float("inf")}
