# An MCP server that reads as permissively as a server can (Python's json: lone surrogates,
# duplicate keys, deep nesting) and writes every line it receives, byte for byte, to a log —
# so a test can tell exactly what the gateway let through. It answers initialize, tools/call
# (except of the tool "hang", never answered), resources/read, prompts/get and batches.
import json
import sys

log = sys.argv[1]


def record(raw):
    with open(log, "ab") as f:
        f.write(raw + b"\n")


def answer(msg):
    if not isinstance(msg, dict) or "id" not in msg or "method" not in msg:
        return None
    method, params = msg["method"], msg.get("params") or {}
    if method == "initialize":
        result = {"protocolVersion": "2025-11-25", "serverInfo": {"name": "raw", "version": "1"},
                  "capabilities": {"tools": {}, "resources": {}, "prompts": {}}}
    elif method == "tools/call":
        if params.get("name") == "hang":
            return None
        result = {"content": [{"type": "text", "text": "ran " + str(params.get("name"))}], "isError": False}
    elif method == "tools/list":
        result = {"tools": []}
    elif method == "resources/read":
        result = {"contents": [{"uri": params.get("uri"), "text": "the resource"}]}
    elif method == "prompts/get":
        result = {"messages": [{"role": "user", "content": {"type": "text", "text": "the prompt"}}]}
    else:
        return {"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": "no " + str(method)}}
    return {"jsonrpc": "2.0", "id": msg["id"], "result": result}


def send(value):
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


for raw in sys.stdin.buffer:
    raw = raw.rstrip(b"\r\n")
    if not raw:
        continue
    record(raw)
    try:
        msg = json.loads(raw)
    except Exception as e:  # what a server says of a line it cannot read
        send({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": type(e).__name__}})
        continue
    if isinstance(msg, list):
        answers = [a for a in map(answer, msg) if a]
        if answers:
            send(answers)
    else:
        a = answer(msg)
        if a:
            send(a)
