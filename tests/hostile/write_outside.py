"""Try to create files outside the work dir; report which writes appeared to succeed."""

import os


def run():
    targets = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "pwned.txt"),
               os.path.join(os.environ.get("HOSTILE_TASK_DIR", "/nonexistent"), "pwned.txt")]
    marker = os.environ.get("HOSTILE_MARKER", "agentopt-marker")
    targets += [f"/tmp/{marker}", f"/var/tmp/{marker}", f"/dev/shm/{marker}", f"/root/{marker}",
                os.path.join(os.environ.get("HOSTILE_HOST_HOME", "/root"), marker)]
    wrote = []
    for path in targets:
        try:
            with open(path, "w") as f:
                f.write("pwned")
            wrote.append(path)
        except OSError:
            pass
    # Writing inside the work dir must still work.
    with open("inside.txt", "w") as f:
        f.write("ok")
    return {"score": 1.0, "wrote": ";".join(wrote)}
