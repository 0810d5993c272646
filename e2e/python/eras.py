"""One client era against one endpoint, through the official Python SDK: listing,
a call, progress as it happens, an elicitation and a sampling request answered by
the client, and cancellation. The upstream behind the endpoint may speak either era;
Hawser bridges them.

usage: eras.py <endpoint URL> <mode: legacy | 2026-07-28> <tool prefix, or - for none> <fixture base URL>
"""

import sys
import time

import anyio
import mcp.types as types
from mcp import Client

from common import check, fixture_events, run, text_of, wait_for

URL, MODE, PREFIX, FIXTURE = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]


def tool(name):
    return name if PREFIX == "-" else f"{PREFIX}__{name}"


async def main():
    report = {"mode": MODE, "elicitations": [], "samplings": 0}

    async def on_elicit(context, params):
        report["elicitations"].append(params.message)
        return types.ElicitResult(action="accept", content={"name": "Ada Lovelace"})

    async def on_sample(context, params):
        report["samplings"] += 1
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="sampled by the client"),
            model="test-model",
        )

    async with Client(URL, mode=MODE, elicitation_callback=on_elicit, sampling_callback=on_sample) as client:
        names = sorted(t.name for t in (await client.list_tools()).tools)
        report["tools"] = names
        # `confirm` is offered only to clients that can answer an elicitation.
        for name in ("echo", "progress", "slow", "elicit", "sample", "confirm"):
            check(tool(name) in names, f"{tool(name)} missing from {names}")

        result = await client.call_tool(tool("echo"), {"text": f"hello in {MODE}"})
        check(text_of(result) == f"hello in {MODE}", f"echo returned {text_of(result)!r}")

        seen = []

        async def on_progress(progress, total, message):
            seen.append((time.monotonic(), progress))

        result = await client.call_tool(tool("progress"), {"steps": 3, "step_ms": 500}, progress_callback=on_progress)
        finished = time.monotonic()
        check(text_of(result) == "completed 3 steps", f"progress returned {text_of(result)!r}")
        check([p for _, p in seen] == [1, 2, 3], f"progress values {[p for _, p in seen]}")
        check(finished - seen[0][0] >= 0.5, "progress arrived with the result, not as it happened")

        result = await client.call_tool(tool("elicit"), {"message": "What is your name?"})
        check(report["elicitations"] == ["What is your name?"], f"elicitations: {report['elicitations']}")
        check("Ada Lovelace" in text_of(result), f"elicit returned {text_of(result)!r}")

        result = await client.call_tool(tool("confirm"), {"message": "Go ahead?"})
        check(len(report["elicitations"]) == 2, f"elicitations: {report['elicitations']}")
        # The answer had no `confirm` field: the tool says so.
        check(text_of(result) == "not confirmed", f"confirm returned {text_of(result)!r}")

        result = await client.call_tool(tool("sample"), {"prompt": "Say something"})
        check(report["samplings"] == 1, f"samplings: {report['samplings']}")
        check("sampled by the client" in text_of(result), f"sample returned {text_of(result)!r}")

        # Cancellation: a call abandoned by the client ends upstream.
        before = len(fixture_events(FIXTURE))
        started = time.monotonic()
        with anyio.move_on_after(0.8):
            await client.call_tool(tool("slow"), {"ms": 20000})
            raise AssertionError("slow call was expected to be cancelled")
        check(time.monotonic() - started < 5, "cancelling the slow call took too long")

        def upstream_stopped():
            events = fixture_events(FIXTURE)[before:]
            return [e for e in events if e.get("kind") in ("cancelled", "stopped")]

        report["upstream_cancel_events"] = len(await wait_for(upstream_stopped, 10, "the upstream to see the cancellation"))

        result = await client.call_tool(tool("echo"), {"text": "after the cancel"})
        check(text_of(result) == "after the cancel", f"echo after cancel returned {text_of(result)!r}")
    return report


run(main)
