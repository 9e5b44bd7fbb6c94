"""Start the audit viewer: bind a socket (127.0.0.1 unless told otherwise), say where, serve.

The socket is bound here rather than by uvicorn so that ``--port 0`` (any free port) works and the
printed address is the real one: tests and scripts read it from the first line of output.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import uvicorn

from medcurate.release.catalog import lake_of_release
from medcurate.viewer.app import create_app
from medcurate.viewer.release_view import ReleaseView

WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def serve(folder: Path, host: str = "127.0.0.1", port: int = 8765, allow_hosts: tuple[str, ...] = ()) -> None:
    """Serve ``folder`` until interrupted. Binding to all interfaces accepts any Host header; otherwise
    only this machine's names and ``allow_hosts``."""
    view = ReleaseView(folder)
    lake = lake_of_release(view.folder)
    hosts = ("*",) if host in WILDCARD_HOSTS else (host, *allow_hosts)
    app = create_app(view, lake if lake is not None and (lake / "runs").is_dir() else None, hosts)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)  # connections queue from now on, so the address printed below is usable at once
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    print(f"serving {view.info['name']} {view.info['version']} at http://{shown}:{bound}/", flush=True)
    print(f"  read-only; {len(view)} samples; Ctrl-C stops", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
