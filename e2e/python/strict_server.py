"""A second upstream for the e2e tests: the official Python SDK's MCP server with a
strict check on the protocol version header, as some servers apply it.

An `initialize` whose `MCP-Protocol-Version` header differs from its body's
`protocolVersion` is refused with 400, and so is every later request of a session
whose header differs from the version the session negotiated.

usage: strict_server.py   (prints "listening http://127.0.0.1:PORT", then serves /mcp)
"""

import json
import socket
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

server = MCPServer("strict")


@server.tool()
def echo(text: str) -> str:
    """Returns its input."""
    return text


inner = server.streamable_http_app(host="127.0.0.1")
negotiated = {}


async def strict(scope, receive, send):
    """Refuses version headers that disagree with the session."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return await inner(scope, receive, send)
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = b"".join(chunks)
    header = headers.get("mcp-protocol-version")
    session = headers.get("mcp-session-id")
    try:
        msg = json.loads(body)
    except ValueError:
        msg = {}
    problem = None
    if isinstance(msg, dict) and msg.get("method") == "initialize":
        wanted = (msg.get("params") or {}).get("protocolVersion")
        if header is not None and header != wanted:
            problem = f"header {header} does not match initialize params {wanted}"
    elif session in negotiated and header != negotiated[session]:
        problem = f"header {header} does not match the session's version {negotiated[session]}"
    if problem:
        payload = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": problem}}).encode()
        await send({"type": "http.response.start", "status": 400, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})
        return

    replayed = False

    async def replay():
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def capture(message):
        # Learn the version a new session negotiated from the initialize answer.
        if message["type"] == "http.response.start" and isinstance(msg, dict) and msg.get("method") == "initialize":
            out = dict((k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", []))
            sid = out.get("mcp-session-id")
            if sid:
                negotiated[sid] = (msg.get("params") or {}).get("protocolVersion")
        await send(message)

    await inner(scope, replay, capture)


def main():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    print(f"listening http://127.0.0.1:{port}", flush=True)
    config = uvicorn.Config(strict, log_level="warning", lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
