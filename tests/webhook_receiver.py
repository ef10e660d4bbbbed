"""A webhook receiver on 127.0.0.1 for tests: counts what it is sent, per path.

Each path answers as the test sets it: ``ok`` (204), ``fail`` (HTTP 500) or ``hang`` (no
answer until the test ends). ``received`` keeps every body, by path, in arrival order.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Mode = Literal["ok", "fail", "hang"]


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
                self.send_response(204 if mode == "ok" else 500)
                self.send_header("Content-Length", "0")
                self.end_headers()

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
