"""``python -m billing_api.simulator``: serve the simulator over HTTP until stopped."""

from __future__ import annotations

import argparse
import signal
import sys

from .core import DEFAULT_ACCOUNT_ID, DEFAULT_TOKEN, Simulator
from .server import ADMIN_PREFIX, SimulatorHTTPServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m billing_api.simulator",
        description="A fake of Cloudflare's AI Gateway billing API, for demos and tests.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mode", choices=("default", "current"), default="default")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="bearer token with write access")
    parser.add_argument("--read-token", help="bearer token with read access only")
    parser.add_argument(
        "--account",
        dest="accounts",
        action="append",
        metavar="ID",
        help="account id to serve (repeatable)",
    )
    parser.add_argument(
        "--topup-settle-seconds", type=float, default=5.0, help="how long a top-up stays pending"
    )
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)
    simulator = Simulator(
        seed=args.seed,
        mode=args.mode,
        token=args.token,
        read_token=args.read_token,
        accounts=tuple(args.accounts or (DEFAULT_ACCOUNT_ID,)),
        topup_settle_seconds=args.topup_settle_seconds,
    )
    server = SimulatorHTTPServer(simulator, args.host, args.port, quiet=args.quiet)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C
    print(f"Cloudflare AI Gateway billing simulator (mode={args.mode}, seed={args.seed})")
    print(f"base URL:   {server.base_url}")
    print(f"token:      {args.token}")
    if args.read_token:
        print(f"read token: {args.read_token}")
    for account_id in simulator.account_ids:
        print(f"account:    {account_id}")
    print(f"admin:      {server.origin}{ADMIN_PREFIX}")
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr)
    finally:
        simulator.release()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
