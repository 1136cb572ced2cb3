"""Write 900 MiB into the private /dev/shm tmpfs: tmpfs pages must count against the job's memory cap."""



def run():
    chunk = b"\x01" * (16 << 20)
    written = 0
    try:
        with open("/dev/shm/fill", "wb") as f:
            for _ in range(900 // 16):
                f.write(chunk)
                f.flush()
                written += len(chunk)
    except OSError as exc:
        return {"score": 0.0, "written_mb": written >> 20, "error": str(exc)}
    return {"score": 1.0, "written_mb": written >> 20}
