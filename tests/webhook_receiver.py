"""A webhook receiver on 127.0.0.1 for tests: counts what it is sent, per path.

Each path answers as the test sets it: ``ok`` (204), ``fail`` (HTTP 500), ``hang`` (no
answer until the test ends), ``dribble`` (an answer, one byte every 0.2 s, never ending),
``endless`` (204, then a body that never ends) or ``long-headers`` (headers that never end).
``received`` keeps every body, by path, in arrival order.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Mode = Literal["ok", "fail", "hang", "dribble", "endless", "long-headers"]


class Receiver:
    def __init__(self) -> None:
        self.modes: dict[str, Mode] = {}
        self.received: defaultdict[str, list[Any]] = defaultdict(list)
        self.lock = threading.Lock()
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                with receiver.lock:
                    receiver.received[self.path].append(body)
                mode = receiver.modes.get(self.path, "ok")
                if mode == "hang":
                    receiver.released.wait(30)
                    return
                if mode in ("dribble", "endless", "long-headers"):
                    self.hostile(mode)
                    return
                self.send_response(204 if mode == "ok" else 500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def hostile(self, mode: Mode) -> None:
                """Writes until the client hangs up or the test ends."""
                start, again, pause = {
                    "dribble": (b"HTTP/1.1 204 No Content\r\nX-Slow: ", b"a", 0.2),
                    "endless": (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", b"a" * 4096, 0.01),
                    "long-headers": (b"HTTP/1.1 204 No Content\r\n", b"X-Pad: aaaa\r\n", 0),
                }[mode]
                try:
                    self.wfile.write(start)
                    while not receiver.released.wait(pause):
                        self.wfile.write(again)
                        self.wfile.flush()
                except OSError:
                    pass  # the client hung up

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str, mode: Mode = "ok") -> str:
        self.modes[path] = mode
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def count(self, path: str) -> int:
        with self.lock:
            return len(self.received[path])

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
