"""The HTTP front of the simulator: a ThreadingHTTPServer around one Simulator.

Billing calls go to the core unchanged. Admin calls under ``/__simulator/`` (see ``_admin``;
bodies carry the arguments of the matching Simulator method) need no token (the server
binds 127.0.0.1 by default) and let tests and operators steer a running server.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .core import API_PREFIX, Reply, Simulator
from .faults import FaultError

ADMIN_PREFIX = "/__simulator/"


class SimulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a hung request must not keep the process alive
    allow_reuse_address = True

    def __init__(self, simulator: Simulator, host: str, port: int, *, quiet: bool) -> None:
        self.simulator = simulator
        self.quiet = quiet
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _Handler)

    @property
    def origin(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def base_url(self) -> str:
        """What a client (or Cloudflare's SDK) takes as its base URL."""
        return self.origin + API_PREFIX

    def start(self) -> SimulatorHTTPServer:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.simulator.release()
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server_close()


def start_server(
    simulator: Simulator, host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True
) -> SimulatorHTTPServer:
    """A server serving from a daemon thread (port 0 picks a free port); ``stop()`` it."""
    return SimulatorHTTPServer(simulator, host, port, quiet=quiet).start()


class _Handler(BaseHTTPRequestHandler):
    server: SimulatorHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "cloudflare-billing-simulator"
    # Headers and body go out in two writes; without this, Nagle plus delayed ACKs add ~40 ms.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        # The request line only: the token travels in a header and is never logged.
        if not self.server.quiet:
            sys.stderr.write(f"simulator {self.address_string()} {format % args}\n")

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if parts.path.startswith(ADMIN_PREFIX):
            reply = _admin(self.server.simulator, self.command, parts.path, query, body)
        else:
            reply = self.server.simulator.handle(
                self.command, parts.path, query, dict(self.headers.items()), body
            )
        status, headers, content = reply
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. during a hang fault)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve


def _json(status: int = 200, ok: bool = True, **fields: Any) -> Reply:
    return status, {"Content-Type": "application/json"}, json.dumps({"ok": ok, **fields}).encode()


def _admin(
    simulator: Simulator, method: str, path: str, query: dict[str, str], body: bytes
) -> Reply:
    action = path[len(ADMIN_PREFIX) :].strip("/")
    try:
        data: Any = json.loads(body) if body.strip() else {}
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return _json(400, False, error="body: must be a JSON object")
    try:
        match method, action:
            case "GET", "info":
                accounts = list(simulator.account_ids)
                return _json(mode=simulator.mode, accounts=accounts, now=simulator.now())
            case "GET", "calls":
                return _json(calls=dict(simulator.calls))
            case "POST", "reset-calls":
                simulator.reset_calls()
                return _json(calls={})
            case "GET", "in-flight":
                return _json(in_flight=dict(simulator.in_flight))
            case "POST", "release":
                simulator.release()
                return _json()
            case "GET", "faults":
                return _json(faults=simulator.faults())
            case "POST", "faults":
                simulator.set_fault(**data)  # a missing endpoint or kind is a TypeError
                return _json(201, faults=simulator.faults())
            case "DELETE", "faults":
                simulator.clear_faults(query.get("endpoint") or data.get("endpoint"))
                return _json(faults=simulator.faults())
            case "POST", "fail-auto-topup":
                account_id = data.pop("account_id", None) or simulator.account_ids[0]
                simulator.fail_auto_topup(account_id, **data)
                return _json()
            case "POST", "advance":
                seconds = data.get("seconds")
                if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                    raise FaultError("seconds: must be a number")
                simulator.advance_clock(float(seconds))
                return _json(now=simulator.now())
    except (FaultError, TypeError) as exc:
        return _json(400, False, error=str(exc))
    except KeyError as exc:
        return _json(404, False, error=f"unknown account {exc}")
    return _json(404, False, error=f"no admin action {method} {action}")
