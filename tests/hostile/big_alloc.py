def run():
    blob = bytearray(10 * 1024**3)  # 10 GB
    return float(len(blob))
