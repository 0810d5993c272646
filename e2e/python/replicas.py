"""One Python SDK session (a legacy-era client: initialize, Mcp-Session-Id) spread
over several replicas by a round-robin load balancer: list, call, an elicitation
answered through whichever replica the balancer picks, and DELETE (the SDK ends the
session when it closes). 2026-07-28 clients across replicas: eras.py.

usage: replicas.py <load balancer /mcp URL> <connection prefix>
"""

import sys

import mcp.types as types
from mcp import Client

from common import check, run, text_of

URL, PREFIX = sys.argv[1], sys.argv[2]


async def main():
    report = {"elicitations": 0}

    async def on_elicit(context, params):
        report["elicitations"] += 1
        return types.ElicitResult(action="accept", content={"name": f"answer-{report['elicitations']}"})

    async with Client(URL, mode="legacy", elicitation_callback=on_elicit) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        check(f"{PREFIX}__echo" in names, f"{PREFIX}__echo missing from {names}")
        for i in range(6):
            result = await client.call_tool(f"{PREFIX}__echo", {"text": f"call {i}"})
            check(text_of(result) == f"call {i}", f"call {i} returned {text_of(result)!r}")
        # Several elicitations, so that answers land on replicas other than the
        # one holding the call.
        for i in range(1, 5):
            result = await client.call_tool(f"{PREFIX}__elicit", {"message": f"question {i}"})
            check(f"answer-{i}" in text_of(result), f"elicitation {i} came back as {text_of(result)!r}")
        result = await client.call_tool(f"{PREFIX}__progress", {"steps": 3, "step_ms": 50})
        check(text_of(result) == "completed 3 steps", f"progress returned {text_of(result)!r}")
    return report


run(main)
