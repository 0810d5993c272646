"""Signs in to Hawser with the official SDK's OAuth client, starting from nothing
but the gateway URL: 401, protected resource metadata, authorization server
discovery, dynamic client registration, authorization code + PKCE with the RFC 8707
resource, then tool calls with the token.

usage: signin.py GATEWAY_MCP_URL TOOL MODE(auto|legacy) [SUBJECT [PAUSE]]

With PAUSE (seconds), waits that long after the first calls and calls once more:
with a short-lived access token the client refreshes it first.

The authorization step is a browser's: GET the authorization URL, read the code from
the redirect (the mock provider approves at once, as SUBJECT via login_hint).
Prints {"tools": n, "echo": text, "token_sha256": ..., "client_id": ...}.
"""

import hashlib
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

import anyio
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

from common import check, run, text_of

URL, TOOL, MODE = sys.argv[1], sys.argv[2], sys.argv[3]
SUBJECT = sys.argv[4] if len(sys.argv) > 4 else None
PAUSE = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0


class Memory:
    def __init__(self):
        self.tokens = None
        self.client = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, info):
        self.client = info


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


redirected = {}


async def open_browser(url):
    if SUBJECT:
        url += "&" + urllib.parse.urlencode({"login_hint": SUBJECT})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(url, timeout=10)
        raise AssertionError("the authorization endpoint did not redirect")
    except urllib.error.HTTPError as e:
        check(e.code == 302, f"authorize answered {e.code}: {e.read()[:300]!r}")
        location = e.headers["Location"]
    query = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)
    check("code" in query, f"no code in the redirect: {location}")
    redirected.update({k: v[0] for k, v in query.items()})


async def callback():
    return AuthorizationCodeResult(
        code=redirected["code"], state=redirected.get("state"), iss=redirected.get("iss")
    )


async def main():
    storage = Memory()
    auth = OAuthClientProvider(
        server_url=URL,
        client_metadata=OAuthClientMetadata(
            client_name="hawser-e2e",
            redirect_uris=["http://127.0.0.1:9/callback"],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=open_browser,
        callback_handler=callback,
    )
    http = create_mcp_http_client(auth=auth)
    async with http:
        async with Client(streamable_http_client(URL, http_client=http), mode=MODE) as client:
            tools = (await client.list_tools()).tools
            check(any(t.name == TOOL for t in tools), f"{TOOL} not among {[t.name for t in tools]}")
            result = await client.call_tool(TOOL, {"text": "signed in"})
            echo = text_of(result)
            # A few more calls: through nginx they land on every replica.
            for _ in range(6):
                await client.call_tool(TOOL, {"text": "again"})
            first_token = storage.tokens.access_token
            if PAUSE:
                await anyio.sleep(PAUSE)
                later = text_of(await client.call_tool(TOOL, {"text": "later"}))
                check("later" in later, f"the call after the pause answered {later!r}")
    token = storage.tokens.access_token
    return {
        "tools": len(tools),
        "echo": echo,
        "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
        "client_id": storage.client.client_id if storage.client else None,
        "token_changed": token != first_token,
    }


if __name__ == "__main__":
    run(main)
