"""The Dash application and its HTTP server.

    >>> data = ExplorerData.open(["runs/care", "runs/simclr"], "stores/pdb")   # doctest: +SKIP
    >>> server = make_server(create_app(data), "127.0.0.1", 8050)             # doctest: +SKIP
    >>> server.serve_forever()                                                # doctest: +SKIP

Safety: the server is werkzeug's threaded WSGI server with debug mode off (no
interactive debugger, no tracebacks in the page); it binds where it is told, and the
command line binds to 127.0.0.1 unless ``--host`` says otherwise. Requests larger than
an upload can need are refused before they are read.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import socket
from pathlib import Path

import dash

from apps.trajectory_explorer.callbacks import register_callbacks
from apps.trajectory_explorer.data import ExplorerData
from apps.trajectory_explorer.layout import build_layout

ASSETS = Path(__file__).resolve().parent / "assets"
TITLE = "protein-care trajectory explorer"
#: Room for the JSON around a base64 upload in one callback request.
REQUEST_OVERHEAD_BYTES = 1024 * 1024


def create_app(data: ExplorerData) -> dash.Dash:
    """The Dash app over ``data`` (its ``max_upload_bytes`` limits uploads)."""
    app = dash.Dash(
        __name__, title=TITLE, update_title=None, assets_folder=str(ASSETS), serve_locally=True,
        suppress_callback_exceptions=False,
    )
    app.layout = lambda: build_layout(data)  # per page load: each tab gets its own upload session
    register_callbacks(app, data)
    # base64 is 4/3 of the bytes; anything larger than an allowed upload can need is refused unread.
    app.server.config["MAX_CONTENT_LENGTH"] = math.ceil(data.max_upload_bytes * 4 / 3) + REQUEST_OVERHEAD_BYTES
    app.server.config["DEBUG"] = False
    app.server.config["PROPAGATE_EXCEPTIONS"] = False
    return app


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def make_server(app: dash.Dash, host: str = "127.0.0.1", port: int = 8050):
    """A threaded werkzeug server for ``app`` bound to ``host:port`` (port 0: a free
    one, read it from ``server.server_port``); call ``serve_forever()`` and, from another
    thread, ``shutdown()``. Raises ``OSError`` (``errno.EADDRINUSE`` when the port is
    taken): the socket is bound here, as werkzeug would print and exit instead."""
    from werkzeug.serving import LISTEN_QUEUE, get_sockaddr, select_address_family
    from werkzeug.serving import make_server as werkzeug_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    family = select_address_family(host, port)
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug: no wait after a restart
        sock.bind(get_sockaddr(host, int(port), family))
        sock.listen(LISTEN_QUEUE)
        server = werkzeug_server(host, port, app.server, threaded=True, fd=sock.fileno())  # werkzeug dups the fd
    server.server_port = server.port
    return server
