"""Resource updates through the official Python SDK: a 2026-07-28 client's
`listen(resource_subscriptions=...)`, or a legacy client's `subscribe_resource`,
hears the update another client's call makes the upstream announce (that client may
reach another replica).

usage: resource_updates.py <endpoint URL> <mode: legacy | 2026-07-28> <tool prefix, or - for none>
"""

import sys

import anyio
import mcp.types as types
from mcp import Client
from mcp.client.subscriptions import ResourceUpdated

from common import check, run, text_of, wait_for

URL, MODE, PREFIX = sys.argv[1], sys.argv[2], sys.argv[3]
WATCHED = "test://watched-resource"


def tool(name):
    return name if PREFIX == "-" else f"{PREFIX}__{name}"


async def touch():
    """Another client, another request (and maybe another replica) makes the update."""
    async with Client(URL, mode=MODE) as other:
        result = await other.call_tool(tool("touch_resource"), {"uri": WATCHED})
        check(text_of(result).startswith("updated"), f"touch_resource returned {text_of(result)!r}")


async def modern(report):
    async with Client(URL, mode=MODE) as client:
        async with client.listen(resource_subscriptions=[WATCHED]) as sub:
            honored = list(sub.honored.resource_subscriptions or [])
            check(honored == [WATCHED], f"honored {honored}")
            await touch()
            with anyio.fail_after(10):
                async for event in sub:
                    if isinstance(event, ResourceUpdated):
                        report["updated"].append(event.uri)
                        break


async def legacy(report):
    async def on_message(message):
        if isinstance(message, types.ResourceUpdatedNotification):
            report["updated"].append(message.params.uri)

    async with Client(URL, mode=MODE, message_handler=on_message) as client:
        await client.subscribe_resource(WATCHED)
        # The session's GET stream is open once the SDK is connected; give the
        # subscription a moment to be watched wherever that stream is.
        await anyio.sleep(1)
        await touch()
        await wait_for(lambda: report["updated"], 10, "notifications/resources/updated")


async def main():
    report = {"mode": MODE, "updated": []}
    if MODE == "legacy":
        await legacy(report)
    else:
        await modern(report)
    check(report["updated"] == [WATCHED], f"updates heard: {report['updated']}")
    return report


run(main)
