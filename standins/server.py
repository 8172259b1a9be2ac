"""Serve an ASGI app on a loopback port from a background thread."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import uvicorn


@dataclass
class RunningServer:
    """A server started by :func:`serve_in_thread`; ``stop()`` shuts it down."""

    url: str
    port: int
    _server: uvicorn.Server
    _thread: threading.Thread

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)


def serve_in_thread(app, *, host: str = "127.0.0.1", port: int = 0,
                    ssl_certfile: str | None = None,
                    ssl_keyfile: str | None = None) -> RunningServer:
    """Start ``app`` on ``host:port`` (0 picks a free port) and wait until it accepts.

    The socket is bound here, before the thread starts, so the port is known
    and reserved at once and two servers can never race for the same one.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Without it, small answers on a kept-alive connection wait for the
    # client's delayed ACK (about 40 ms each), which real servers do not show.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False,
                            ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
                            lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name=f"server-{bound_port}", daemon=True)
    thread.start()

    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"server on {host}:{bound_port} did not start")
        time.sleep(0.01)
    scheme = "https" if ssl_certfile else "http"
    return RunningServer(f"{scheme}://{host}:{bound_port}", bound_port, server, thread)
