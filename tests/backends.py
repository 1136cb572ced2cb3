"""Sandbox backends the hostile suite (tests/test_hostile.py) runs against.

Adding a backend is a 3-line change: append a ``Backend(name, factory, unavailable)`` where
``unavailable()`` returns None when the backend can run here, or a one-line reason to skip
(printed in pytest's skip summary), e.g.::

    BACKENDS.append(Backend("docker", lambda: DockerSandbox(image="agentopt-cpu"), docker_unavailable))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agentopt.sandbox.base import Sandbox
from agentopt.sandbox.isolation import detect
from agentopt.sandbox.local import LocalSandbox


@dataclass(frozen=True)
class Backend:
    name: str
    factory: Callable[[], Sandbox]
    unavailable: Callable[[], str | None]


def _local_namespaces_unavailable() -> str | None:
    s = detect()
    if not s.unshare or not s.unshare_net:
        return "unshare(1) cannot create pid/net namespaces on this machine"
    if not (s.is_root and s.setpriv and s.nobody):
        return "the strong local profile needs root to drop the guest to 'nobody'"
    return None


def _local_warm_unavailable() -> str | None:
    from agentopt.sandbox.warm_local import warm_unavailable

    return warm_unavailable()


def _local_warm() -> Sandbox:
    from agentopt.sandbox.warm_local import WarmLocalSandbox

    return WarmLocalSandbox()


BACKENDS: list[Backend] = [
    Backend("local-namespaces", lambda: LocalSandbox(isolation="namespaces"), _local_namespaces_unavailable),
    Backend("local-warm", _local_warm, _local_warm_unavailable),
]

# --- docker and ray (agentopt/sandbox/docker_backend.py, ray_backend.py) -----------------------
DOCKER_IMAGE = "agentopt/sandbox-cpu:0.1"  # built by .ci/start-docker.sh


def _docker_unavailable() -> str | None:
    from agentopt.sandbox.docker_backend import unavailable_reason

    return unavailable_reason(DOCKER_IMAGE)


def _docker(warm: int) -> Sandbox:
    from agentopt.sandbox.docker_backend import DockerSandbox

    return DockerSandbox(DOCKER_IMAGE, warm_workers=warm)


def _ray_unavailable() -> str | None:
    from agentopt.sandbox.ray_backend import unavailable_reason

    return unavailable_reason()


def _ray() -> Sandbox:
    from agentopt.sandbox.ray_backend import RaySandbox

    sb = RaySandbox(init_kwargs={"num_cpus": 2, "include_dashboard": False})
    sb.start()  # Ray start-up and worker warm-up must not count against the first job's timeout
    return sb


BACKENDS += [
    Backend("docker", lambda: _docker(0), _docker_unavailable),
    Backend("docker-warm", lambda: _docker(1), _docker_unavailable),
    Backend("ray", _ray, _ray_unavailable),
]
