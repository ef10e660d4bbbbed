"""Another dashboard process reading through the shared cache, for the cross-process tests.

``python -m tests.shared_reader NAME [--fail] [--deadline S] [--reads N]`` sets Django up from
the environment (``REDIS_URL``, ``CACHE_KEY_PREFIX``, ``BILLING_*``), reads ``NAME`` of the
default account ``--reads`` times through :func:`dashboard.infra.upstream.read` (under a page
deadline of ``S`` seconds if given) and prints the last result as JSON. Its loader is the
"Cloudflare" of these tests: :func:`held_loader`, shared with the test process, counts its
calls in Redis and answers only once the test says so, so that a test can see which process
asked and hold the others while it does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

import django
import redis

from billing_api.client import BillingClient
from billing_api.errors import UpstreamError

#: Longer than any test waits: a loader never answers unless the test lets it.
HOLD_LIMIT_SECONDS = 90.0


def calls_key(prefix: str) -> str:
    """The Redis counter of loader calls, under the test's prefix (cleaned up with it)."""
    return f"{prefix}:test:calls"


def go_key(prefix: str) -> str:
    """Once this key exists, held loaders answer."""
    return f"{prefix}:test:go"


def held_loader(
    client: redis.Redis, prefix: str, *, fail: bool = False
) -> Callable[[BillingClient], str]:
    """A loader that counts itself, then waits for ``go_key`` before answering or failing."""

    def load(billing_client: BillingClient) -> str:
        client.incr(calls_key(prefix))
        limit = time.monotonic() + HOLD_LIMIT_SECONDS
        while not client.exists(go_key(prefix)):
            if time.monotonic() > limit:
                raise UpstreamError("the test never let the held read answer", status_code=503)
            time.sleep(0.005)
        if fail:
            raise UpstreamError("Cloudflare is down (test)", status_code=503)
        return f"answer from process {os.getpid()}"

    return load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.shared_reader")
    parser.add_argument("name")
    parser.add_argument("--fail", action="store_true")
    parser.add_argument("--deadline", type=float, default=None)
    parser.add_argument("--reads", type=int, default=1)
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    django.setup()
    from django.conf import settings

    from dashboard.infra import upstream

    prefix = os.environ["CACHE_KEY_PREFIX"]
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    loader = held_loader(client, prefix, fail=args.fail)
    account_id = settings.BILLING_DEFAULT_ACCOUNT

    def read_once() -> upstream.Fetched[str]:
        return upstream.read(account_id, args.name, loader)

    for _ in range(args.reads):
        if args.deadline is None:
            got = read_once()
        else:
            got = upstream.gather({"it": read_once}, deadline=args.deadline)["it"]
    print(json.dumps({"value": got.value, "error": got.error, "pending": got.pending}))
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
