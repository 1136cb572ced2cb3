"""HOST-side stand-in for "the image's python" (run with the host interpreter, never in a guest).

agentopt.sandbox.requirements runs ``<python> -I -c PROBE names``; this script runs that python
in a throwaway, network-less container of the image. The docker backend writes a copy in
which the CONFIG literal below is replaced by the JSON config (image, python, user, labels).
"""
import json
import sys

import docker

CONFIG = "@CONFIG@"
config = json.loads(CONFIG)
client = docker.from_env()
try:
    out = client.containers.run(config["image"], [config["python"], *sys.argv[1:]], remove=True,
                                network_mode="none", user=config["user"] or None,
                                labels=config["labels"], stdout=True, stderr=True)
except docker.errors.ContainerError as err:
    sys.stderr.write((err.stderr or b"").decode(errors="replace") or str(err))
    sys.exit(err.exit_status or 1)
sys.stdout.write(out.decode(errors="replace"))
