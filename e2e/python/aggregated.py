"""The aggregated endpoint through the official Python SDK: prefixed listing, a call,
progress arriving as it happens, an elicitation round trip, and cancellation reaching
the upstream.

usage: aggregated.py <gateway /mcp URL> <fixture base URL> <connection prefix>
"""

import sys
import time

import anyio
import mcp.types as types
from mcp import Client

from common import check, fixture_events, run, text_of, wait_for

URL, FIXTURE, PREFIX = sys.argv[1], sys.argv[2], sys.argv[3]


async def main():
    report = {}
    elicitations = []

    async def on_elicit(context, params):
        elicitations.append(params.message)
        return types.ElicitResult(action="accept", content={"name": "Ada Lovelace"})

    async with Client(URL, elicitation_callback=on_elicit) as client:
        report["serverInfo"] = client.server_info.name if client.server_info else None
        check(report["serverInfo"] == "hawser", f"expected Hawser's serverInfo, got {report['serverInfo']!r}")

        # Prefixed listing: every tool carries the connection prefix.
        listed = await client.list_tools()
        names = sorted(t.name for t in listed.tools)
        report["tools"] = names
        for tool in ("echo", "progress", "slow", "elicit", "whoami"):
            check(f"{PREFIX}__{tool}" in names, f"{PREFIX}__{tool} missing from {names}")
        check(all(n.startswith(f"{PREFIX}__") for n in names), f"unprefixed tool in {names}")

        # A call, with the name rewritten on the way to the upstream.
        result = await client.call_tool(f"{PREFIX}__echo", {"text": "hello through hawser"})
        check(text_of(result) == "hello through hawser", f"echo returned {text_of(result)!r}")
        check(not result.is_error, "echo reported an error")

        # Progress notifications arrive as they are sent, not all with the result.
        seen = []

        async def on_progress(progress, total, message):
            seen.append((time.monotonic(), progress, total))

        started = time.monotonic()
        result = await client.call_tool(
            f"{PREFIX}__progress", {"steps": 5, "step_ms": 300}, progress_callback=on_progress
        )
        finished = time.monotonic()
        check(text_of(result) == "completed 5 steps", f"progress returned {text_of(result)!r}")
        check(len(seen) == 5, f"expected 5 progress notifications, got {len(seen)}")
        check([p for _, p, _ in seen] == [1, 2, 3, 4, 5], f"progress values {[p for _, p, _ in seen]}")
        spread = seen[-1][0] - seen[0][0]
        report["progress_spread_s"] = round(spread, 3)
        report["first_progress_before_result_s"] = round(finished - seen[0][0], 3)
        check(spread >= 0.9, f"progress notifications not spaced over time (spread {spread:.3f}s)")
        check(finished - seen[0][0] >= 0.9, "first progress arrived with the result, not before it")
        check(seen[0][0] - started < 1.0, "first progress notification came late")

        # Elicitation: the upstream asks the client, the answer goes back upstream.
        result = await client.call_tool(f"{PREFIX}__elicit", {"message": "What is your name?"})
        check(elicitations == ["What is your name?"], f"elicitations seen: {elicitations}")
        check("Ada Lovelace" in text_of(result), f"elicit returned {text_of(result)!r}")
        check("accept" in text_of(result), f"elicit returned {text_of(result)!r}")

        # Cancellation: abandoning a slow call cancels it at the upstream.
        before = len(fixture_events(FIXTURE))
        with anyio.move_on_after(0.8):
            await client.call_tool(f"{PREFIX}__slow", {"ms": 20000})
            raise AssertionError("slow call was expected to be cancelled")

        def upstream_cancelled():
            events = fixture_events(FIXTURE)[before:]
            return [e for e in events if e.get("kind") == "cancelled" and e.get("inFlight")]

        cancelled = await wait_for(upstream_cancelled, 10, "the upstream to see the cancellation")
        report["upstream_cancel_events"] = len(cancelled)

        # The session still works after all of this.
        result = await client.call_tool(f"{PREFIX}__echo", {"text": "still here"})
        check(text_of(result) == "still here", "session unusable after cancellation")
    return report


run(main)
