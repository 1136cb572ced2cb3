def run():
    return {"score": 1.0, "blob": "x" * 5_000_000}
