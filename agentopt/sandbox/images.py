"""Build the sandbox images: ``agentopt sandbox build`` and the CI script call :func:`build_image`.

Two ways to build, because many machines (CI runners, clusters behind a proxy) reach a
Debian package mirror but no image registry:

* registry build: ``docker build`` of ``sandboxes/Dockerfile.cpu`` / ``Dockerfile.cuda``
  (``FROM python:3.11-slim`` / ``FROM nvidia/cuda``) — needs a reachable registry;
* offline build: ``sandboxes/build_rootfs.sh`` debootstraps a minimal Debian rootfs with
  python3 + numpy (cpu), or python3 + numpy, numba and numba-cuda[cu12] from PyPI (cuda: the
  CUDA user-space libraries come as wheels, the driver is mounted by the NVIDIA container
  toolkit at run time), and ``docker import``-s it — needs root, debootstrap, a Debian mirror
  and (cuda) a PyPI index, but no image registry.

A tag that already exists is not rebuilt (the build is minutes; the check is milliseconds).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from typing import Literal

from agentopt.errors import SandboxError
from agentopt.paths import guest_dir

log = logging.getLogger(__name__)

ImageKind = Literal["cpu", "cuda"]
DEFAULT_TAGS: dict[str, str] = {
    "cpu": "agentopt/sandbox-cpu:0.1",
    "cuda": "agentopt/sandbox-cuda:0.1",
}


def default_tag(kind: str) -> str:
    """The tag used when the user gives none (also what ``sandbox.image`` defaults to in docs)."""
    if kind not in DEFAULT_TAGS:
        raise SandboxError(f"unknown image kind {kind!r}: use 'cpu' or 'cuda'")
    return DEFAULT_TAGS[kind]


def _client():  # noqa: ANN202 - docker.DockerClient, imported lazily
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:  # pragma: no cover - docker is a core dependency
        raise SandboxError("the 'docker' Python package is missing: pip install docker") from None
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except DockerException as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SandboxError(f"cannot reach the Docker engine ({reason}); start it or run .ci/start-docker.sh") from None
    return client


def image_exists(tag: str, client=None) -> bool:  # noqa: ANN001
    """True when the engine already holds ``tag``."""
    from docker.errors import ImageNotFound

    client = client or _client()
    try:
        client.images.get(tag)
    except ImageNotFound:
        return False
    return True


def _build_offline(kind: str, tag: str) -> None:
    script = guest_dir("sandboxes") / "build_rootfs.sh"
    if shutil.which("bash") is None:
        raise SandboxError("offline image build needs bash")
    log.info("building %s offline with %s", tag, script)
    proc = subprocess.run(["bash", str(script), tag, kind], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SandboxError(f"offline image build failed: {last}")


def _build_registry(kind: str, tag: str, client) -> None:  # noqa: ANN001
    from docker.errors import BuildError, DockerException

    context = guest_dir("sandboxes")
    dockerfile = f"Dockerfile.{kind}"
    if not (context / dockerfile).is_file():
        raise SandboxError(f"{context / dockerfile} not found (broken install?)")
    log.info("building %s from %s", tag, context / dockerfile)
    try:
        client.images.build(path=str(context), dockerfile=dockerfile, tag=tag, rm=True, pull=False)
    except BuildError as err:
        raise SandboxError(f"docker build of {dockerfile} failed: {err.msg}") from None
    except DockerException as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SandboxError(f"docker build of {dockerfile} failed: {first}") from None


def build_image(kind: ImageKind, tag: str | None = None, offline: bool = False) -> str:
    """Build (or find) the sandbox image and return its tag.

    ``offline=True`` uses the debootstrap rootfs (cpu or cuda); otherwise the Dockerfile is built
    through the engine, which pulls the base image from a registry.
    """
    tag = tag or default_tag(kind)
    default_tag(kind)  # validates kind
    client = _client()
    if image_exists(tag, client):
        log.info("image %s already present; not rebuilding", tag)
        return tag
    if offline:
        _build_offline(kind, tag)
    else:
        _build_registry(kind, tag, client)
    if not image_exists(tag, client):
        raise SandboxError(f"image build finished but {tag} is not in the engine")
    return tag


def run_sandbox_build_cli(kind: str, tag: str | None, offline: bool) -> int:
    """Entry point behind ``agentopt sandbox build``; prints one line and returns an exit code.

    Errors stay :class:`SandboxError` (the CLI turns them into ``error: ...`` + exit 2).
    """
    tag = tag or default_tag(kind)
    existed = image_exists(tag)
    built = build_image(kind, tag, offline)  # type: ignore[arg-type]
    how = "already present" if existed else ("built offline" if offline else "built")
    print(f"{built}: {how}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m agentopt.sandbox.images cpu [--tag T] [--offline]`` (usable without the CLI)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m agentopt.sandbox.images", description=main.__doc__)
    parser.add_argument("kind", choices=sorted(DEFAULT_TAGS))
    parser.add_argument("--tag", default=None)
    parser.add_argument("--offline", action="store_true", help="debootstrap rootfs + docker import")
    args = parser.parse_args(argv)
    try:
        return run_sandbox_build_cli(args.kind, args.tag, args.offline)
    except SandboxError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
