"""`agentopt watch`: a live, read-only dashboard of a run (or a folder of runs) in the browser.

:mod:`~agentopt.watch.server` is the stdlib HTTP server and its routes,
:mod:`~agentopt.watch.pages` renders the HTML, and ``static/`` holds the one script (live
updates) and the stylesheet. The queries live in :mod:`agentopt.evolve.runview`, shared with
the terminal commands (`programs`, `show`, `diff`) and the HTML report. Only the app layer
(the CLI) imports this package.
"""

from agentopt.watch.server import WatchError, WatchServer, run_watch_cli

__all__ = ["WatchError", "WatchServer", "run_watch_cli"]
