"""Try to reach a port the test opened on the host's loopback."""

import os
import socket


def run():
    port = int(os.environ["HOSTILE_PORT"])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(b"leak")
        return 1.0
    except OSError as exc:
        return {"score": 0.0, "error_seen": type(exc).__name__}
