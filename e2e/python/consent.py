"""Per-user consent with the official SDK: the first call to a tool of a connection
with per-user tokens gets a consent link, which this script follows as a browser
would (the consent page, its button, the authorization server signing in LOGIN_HINT,
the redirect back to the gateway); then the call succeeds with the caller's own
upstream account.

usage: consent.py GATEWAY_MCP_URL MODE(legacy|2026-07-28) TOKEN TOOL LOGIN_HINT

- legacy (2025-11-25, declaring URL elicitation): the call fails with -32042
  (URLElicitationRequired) carrying the link; the script consents and retries.
- 2026-07-28: the call answers input_required with a URL elicitation; the SDK hands
  it to the elicitation callback (which consents) and retries by itself.

TOOL is the fixture's `whoami` (as exposed), which reports the upstream token's `sub`.
Prints {"mode", "links", "link_host", "callback_host", "whoami", "calls"}.
"""

import json
import re
import sys
import urllib.parse

import httpx2 as httpx
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
import mcp.types as types

from common import check, run, text_of

URL, MODE, TOKEN, TOOL, LOGIN_HINT = sys.argv[1:6]

report = {"mode": MODE, "links": 0, "calls": 0}


async def consent(link):
    """Follows a consent link as a browser: page, button, provider, callback."""
    report["links"] += 1
    report["link_host"] = urllib.parse.urlparse(link).netloc
    async with httpx.AsyncClient(follow_redirects=False, timeout=10) as browser:
        page = await browser.get(link)
        check(page.status_code == 200, f"consent page answered {page.status_code}: {page.text[:300]}")
        check("default-src 'none'" in page.headers.get("content-security-policy", ""), "consent page without CSP")
        found = re.search(r'<form method="post" action="([^"]+)"><input type="hidden" name="link" value="([^"]+)"', page.text)
        check(found, f"no consent form on the page: {page.text[:500]}")
        action = urllib.parse.urljoin(link, found.group(1))
        sealed = found.group(2).replace("&amp;", "&")
        token = re.search(r'name="form" value="([0-9a-f]+)"', page.text)
        check(token, f"no form token on the consent page: {page.text[:500]}")
        # The page's own button: its form token, and the cookie the page set (the
        # client keeps it). Without them the gateway refuses.
        async with httpx.AsyncClient(follow_redirects=False, timeout=10) as elsewhere:
            bare = await elsewhere.post(action, data={"link": sealed})
        check(bare.status_code == 403, f"the link posted from elsewhere answered {bare.status_code}")
        started = await browser.post(action, data={"link": sealed, "form": token.group(1)})
        check(started.status_code == 303, f"the consent button answered {started.status_code}: {started.text[:300]}")
        cookie = started.headers.get("set-cookie", "").split(";")[0]
        check(cookie.startswith("hawser_consent="), f"no consent cookie: {started.headers}")
        authorize = started.headers["location"] + "&" + urllib.parse.urlencode({"login_hint": LOGIN_HINT})
        approved = await browser.get(authorize)
        check(approved.status_code == 302, f"authorize answered {approved.status_code}: {approved.text[:300]}")
        callback = approved.headers["location"]
        report["callback_host"] = urllib.parse.urlparse(callback).netloc
        done = await browser.get(callback, headers={"cookie": cookie})
        check(done.status_code == 200 and "Account connected" in done.text, f"callback answered {done.status_code}: {done.text[:300]}")
        # The link opens one flow only.
        again = await browser.post(action, data={"link": sealed, "form": token.group(1)})
        check(again.status_code == 410, f"a used link answered {again.status_code}")


async def on_elicit(context, params):
    check(getattr(params, "mode", None) == "url", f"expected a URL elicitation, got {params!r}")
    report["message"] = params.message
    await consent(params.url)
    return types.ElicitResult(action="accept")


async def main():
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {TOKEN}"})
    async with http:
        transport = streamable_http_client(URL, http_client=http)
        async with Client(transport, mode=MODE, elicitation_callback=on_elicit) as client:
            try:
                result = await client.call_tool(TOOL, {})
            except MCPError as e:
                check(MODE == "legacy", f"{MODE}: the first call failed: {e.error}")
                check(e.error.code == -32042, f"expected -32042, got {e.error}")
                elicitations = (e.error.data or {}).get("elicitations", [])
                check(len(elicitations) == 1 and elicitations[0]["mode"] == "url", f"{e.error.data}")
                check(elicitations[0].get("elicitationId"), "a 2025-11-25 URL elicitation needs an id")
                report["message"] = elicitations[0]["message"]
                await consent(elicitations[0]["url"])
                result = await client.call_tool(TOOL, {})
            check(not result.is_error, f"the call after consent failed: {text_of(result)}")
            report["whoami"] = json.loads(text_of(result))
            # More calls, on whichever replica nginx picks: all with this user's token.
            subs = set()
            for _ in range(6):
                again = await client.call_tool(TOOL, {})
                check(not again.is_error, f"a later call failed: {text_of(again)}")
                subs.add(json.loads(text_of(again))["sub"])
                report["calls"] += 1
            report["subs"] = sorted(subs)
    return report


if __name__ == "__main__":
    run(main)
