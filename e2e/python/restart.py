"""An upstream that dies and comes back: its calls fail with a clear error while it is
down and work again once it is back, in the same client session.

The Rust test drives the upstream's life over stdin/stdout: this script prints
`KILL` and waits for `KILLED`, then prints `RESTART` and waits for `RESTARTED`.

usage: restart.py <gateway /mcp URL> <connection prefix>
"""

import sys
import time

import anyio
from mcp import Client

from common import Failure, check, run, text_of


URL, PREFIX = sys.argv[1], sys.argv[2]


def ask(word, answer):
    print(word, flush=True)
    line = sys.stdin.readline().strip()
    check(line == answer, f"expected {answer!r} from the test, got {line!r}")


async def main():
    report = {}
    async with Client(URL) as client:
        result = await client.call_tool(f"{PREFIX}__echo", {"text": "before"})
        check(text_of(result) == "before", "call before the crash failed")

        ask("KILL", "KILLED")
        try:
            result = await client.call_tool(f"{PREFIX}__echo", {"text": "while down"})
            # Some gateways answer with a tool error instead of a JSON-RPC error.
            check(result.is_error, f"call to a dead upstream succeeded: {text_of(result)!r}")
            report["down_error"] = text_of(result)
        except Failure:
            raise
        except Exception as e:  # the SDK raises MCPError for JSON-RPC errors
            report["down_error"] = str(e)
        check(PREFIX in report["down_error"], f"error does not name the connection: {report['down_error']!r}")

        ask("RESTART", "RESTARTED")
        deadline = time.monotonic() + 20
        attempts = 0
        while True:
            attempts += 1
            try:
                result = await client.call_tool(f"{PREFIX}__echo", {"text": "after"})
                if text_of(result) == "after":
                    break
            except Exception as e:
                report["last_retry_error"] = str(e)
            check(time.monotonic() < deadline, f"upstream not usable 20s after restart: {report}")
            await anyio.sleep(0.25)
        report["attempts_after_restart"] = attempts
    return report


run(main)
