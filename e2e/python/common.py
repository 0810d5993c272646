"""Helpers shared by the client scripts the Rust e2e tests run.

Each script takes its endpoints on the command line, drives a real MCP client (the
official Python SDK), prints one JSON object with what it observed on stdout, and
exits non-zero with a message on stderr when an expectation fails.
"""

import json
import sys
import time
import urllib.request


class Failure(Exception):
    """An expectation did not hold."""


def check(condition, message):
    if not condition:
        raise Failure(message)


def fixture_events(base):
    """What the fixture upstream saw (GET /fixture/events)."""
    with urllib.request.urlopen(f"{base}/fixture/events", timeout=10) as r:
        return json.load(r)


async def wait_for(predicate, timeout, what):
    """Polls predicate() until it returns a truthy value or timeout seconds pass.

    Async so the client's own tasks (sending a cancellation, reading streams) keep
    running while it waits.
    """
    import anyio

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout}s waiting for {what}")
        await anyio.sleep(0.1)


def text_of(result):
    """The concatenated text content of a CallToolResult."""
    return "".join(getattr(c, "text", "") for c in result.content)


def run(main):
    """Runs an async main, reporting failures as the scripts' protocol says."""
    import anyio

    try:
        report = anyio.run(main)
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(report, default=str))
