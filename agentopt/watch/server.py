"""`agentopt watch`: a small local web server over one run folder, or a folder of runs.

Standard library only (``ThreadingHTTPServer``): the dashboard is a local tool, and a web
framework would add a dependency for six routes. Safety properties:

* binds to 127.0.0.1 unless told otherwise, and answers only requests whose ``Host`` header
  names this server (a web page elsewhere cannot reach it through DNS rebinding);
* read-only: every run is read through :class:`~agentopt.evolve.runview.RunView`
  (``mode=ro`` SQLite), so watching never slows or locks the run being watched;
* strict Content-Security-Policy: scripts, styles, images and fetches from this origin only,
  no inline script, nothing from the network; all candidate text is escaped by ``pages``.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from agentopt.errors import AgentoptError
from agentopt.evolve.charts import CHART_CSS
from agentopt.evolve.runview import RunInfo, RunView, RunViewError, find_runs
from agentopt.watch import pages

log = logging.getLogger(__name__)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HTML = "text/html; charset=utf-8"
_STATIC = {"watch.js": "text/javascript; charset=utf-8", "watch.css": "text/css; charset=utf-8"}


class WatchError(AgentoptError):
    """The watch server cannot start (bad folder, port in use)."""


def _static(name: str) -> bytes:
    data = resources.files("agentopt.watch").joinpath("static", name).read_bytes()
    return data + (CHART_CSS.encode() if name == "watch.css" else b"")


class RunCatalog:
    """The runs being served: one run folder, or every run folder inside a folder (rescanned
    on each listing, so runs started after the server appear). One RunView per run, kept, so
    its incremental aggregates survive between requests."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).resolve()  # `agentopt watch .` inside a run folder still has a name
        self.single = (self.path / "programs.db").is_file()
        if not self.single and not self.path.is_dir():
            raise WatchError(f"{self.path}: no such run folder")
        self._views: dict[str, RunView] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return [p.name for p in find_runs(self.path)]

    def view(self, name: str) -> RunView:
        folder = self.path if self.single else self.path / name
        if self.single and name != self.path.name or not self.single and (
            "/" in name or name in ("", ".", "..") or not (folder / "programs.db").is_file()
        ):
            raise RunViewError(f"no run named {name!r} here")
        with self._lock:
            view = self._views.get(name)
            if view is None:
                view = self._views[name] = RunView(folder)
                view.start_warming()
            return view


class Response(NamedTuple):
    status: HTTPStatus
    body: bytes
    ctype: str = HTML
    location: str = ""


class _Handler(BaseHTTPRequestHandler):
    server: WatchServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: object) -> None:
        log.debug("watch: " + fmt, *args)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if not self._host_ok():
            self._send(Response(HTTPStatus.MISDIRECTED_REQUEST, b"unknown host", "text/plain; charset=utf-8"))
            return
        url = urlsplit(self.path)
        try:
            response = self._route(url.path, dict(parse_qsl(url.query)))
        except RunViewError as err:
            response = Response(HTTPStatus.NOT_FOUND, pages.error_page(404, str(err)).encode())
        except Exception as err:  # a bug must not kill the server thread or leak a traceback
            log.debug("watch: error on %s", self.path, exc_info=True)
            message = f"internal error: {type(err).__name__} (run with -v for details)"
            response = Response(HTTPStatus.INTERNAL_SERVER_ERROR, pages.error_page(500, message).encode())
        self._send(response)

    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").lower()
        return "*" in self.server.allowed_hosts or host in self.server.allowed_hosts

    def _route(self, path: str, query: dict[str, str]) -> Response:
        catalog = self.server.catalog
        if path.startswith("/static/") and path[8:] in _STATIC:
            return Response(HTTPStatus.OK, _static(path[8:]), _STATIC[path[8:]])
        if path == "/favicon.ico":
            return Response(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        if path == "/":
            if catalog.single:
                return Response(HTTPStatus.FOUND, b"", "text/plain", "/r/" + quote(catalog.path.name, safe="") + "/")
            return Response(HTTPStatus.OK, pages.runs_page(self._entries()).encode())
        if path == "/api/runs":
            infos = [{"folder": n, **(i.model_dump(mode="json") if i else {"error": p})} for n, i, p in self._entries()]
            return Response(HTTPStatus.OK, json.dumps(infos).encode(), "application/json")
        parts = path.split("/")
        if len(parts) < 3 or parts[1] != "r":
            raise RunViewError(f"no page {path!r}")
        name, rest = unquote(parts[2]), "/".join(parts[3:])
        view = catalog.view(name)
        multi = not catalog.single
        if rest == "api/status":
            return Response(HTTPStatus.OK, pages.status_json(view.info()), "application/json")
        if rest == "":
            page = pages.dashboard(view, name, multi)
        elif rest == "programs":
            page = pages.programs_page(view, name, multi, query)
        elif rest.startswith("program/"):
            page = pages.program_page(view, name, multi, unquote(rest[8:]))
        elif rest == "lineage":
            page = pages.lineage_page(view, name, multi)
        elif rest == "failures":
            page = pages.failures_page(view, name, multi)
        else:
            raise RunViewError(f"no page {path!r}")
        return Response(HTTPStatus.OK, page.encode())

    def _entries(self) -> list[tuple[str, RunInfo | None, str]]:
        out: list[tuple[str, RunInfo | None, str]] = []
        for name in self.server.catalog.names():
            try:
                out.append((name, self.server.catalog.view(name).info(), ""))
            except RunViewError as err:
                out.append((name, None, str(err)))
        return out

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        if response.location:
            self.send_header("Location", response.location)
        self.send_header("Content-Type", response.ctype)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(response.body)


class WatchServer(ThreadingHTTPServer):
    """The HTTP server; ``url`` is where to point a browser."""

    daemon_threads = True

    def __init__(self, path: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.catalog = RunCatalog(path)
        try:
            super().__init__((host, port), _Handler)
        except OSError as err:
            raise WatchError(f"cannot listen on {host}:{port} ({err.strerror or err})") from None
        bound = self.server_address[1]
        names = {host, "127.0.0.1", "localhost", "[::1]"} if host in ("127.0.0.1", "localhost", "::1") else {host}
        self.allowed_hosts = {f"{n}:{bound}" for n in names} | ({"*"} if host in ("0.0.0.0", "::") else set())
        self.url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{bound}/"

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="agentopt-watch", daemon=True)
        thread.start()
        return thread


def run_watch_cli(path: Path, host: str, port: int, open_browser: bool, echo: object) -> int:
    """`agentopt watch`: serve until Ctrl-C."""
    server = WatchServer(path, host, port)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("watch: listening on %s: anyone who can reach it can read the run's programs", host)
    print_line = echo if callable(echo) else print
    print_line(f"watching {path} at {server.url}  (Ctrl-C stops)")
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
