#!/usr/bin/env python3
"""A stand-in of the model APIs the real coding agents talk to, on loopback: Anthropic Messages
(POST /v1/messages, streaming) for Claude Code, OpenAI Responses (POST /v1/responses, streaming)
for Codex. It plays a script of shell tool calls and logs every tool result it receives.

usage: model_standin.py PORT_FILE LOG_FILE SCRIPT_JSON

SCRIPT_JSON: {"conversations": [{"name": "main", "match": "go", "steps": [{"command": "…",
"wait": "/path/file"}, …]}, …]}. A conversation is picked by the first whose "match" occurs in
a user message of the request; its step N (N = the tool results in the request so far) asks
for one shell tool call running "command" — after "wait" exists, when given (at most 120 s) —
and once the steps are done the turn ends. Each tool result is logged as a JSON line
{"conversation", "step", "result", "is_error"}. Python 3 standard library only.
"""
import json, os, sys, threading, time, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT_FILE, LOG_FILE = sys.argv[1], sys.argv[2]
SCRIPT = json.loads(sys.argv[3])
_lock = threading.Lock()


def log(obj):
    with _lock, open(LOG_FILE, "a") as f:
        f.write(json.dumps(obj) + "\n")


def text_of(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(text_of(b.get("text", b.get("content", ""))) if isinstance(b, dict) else str(b) for b in content)
    return json.dumps(content)


def conversation(user_texts):
    for c in SCRIPT["conversations"]:
        if any(c["match"] in t for t in user_texts):
            return c
    return None


def step_command(conv, n):
    """The command of step n, once its wait file exists; None when the script is done."""
    if conv is None or n >= len(conv["steps"]):
        return None
    step = conv["steps"][n]
    wait = step.get("wait")
    deadline = time.time() + 120
    while wait and not os.path.exists(wait) and time.time() < deadline:
        time.sleep(0.05)
    return step["command"]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send_json(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_events(self):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True

    def event(self, name, data):
        self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

    def do_GET(self):
        if self.path.split("?")[0].endswith("/models"):
            return self.send_json(200, {"object": "list", "data": [], "models": [], "has_more": False})
        self.send_json(200, {})

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        try:
            body = json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            body = {}
        path = self.path.split("?")[0]
        if path.endswith("/count_tokens"):
            return self.send_json(200, {"input_tokens": 42})
        if path.endswith("/messages"):
            return self.messages(body)
        if path.endswith("/responses"):
            return self.openai_responses(body)
        self.send_json(404, {"error": {"message": "not found"}})

    # Anthropic Messages: Claude Code. Its main loop is the request that offers the Bash tool;
    # anything else (a title, a summary) gets a line of text.
    def messages(self, body):
        tools = [t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
        msgs = body.get("messages") or []
        users = [m for m in msgs if m.get("role") == "user"]
        conv = conversation([text_of(m.get("content")) for m in users]) if "Bash" in tools else None
        results = [b for m in users if isinstance(m.get("content"), list) for b in m["content"]
                   if isinstance(b, dict) and b.get("type") == "tool_result"]
        if conv and results:
            last = results[-1]
            log({"conversation": conv["name"], "step": len(results) - 1, "result": text_of(last.get("content")),
                 "is_error": bool(last.get("is_error", False))})
        command = step_command(conv, len(results))
        if command is not None:
            block = {"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:20], "name": "Bash",
                     "input": {"command": command, "description": "a step of the test"}}
            stop = "tool_use"
        else:
            block = {"type": "text", "text": "Done."}
            stop = "end_turn"
        usage = {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        msg = {"id": "msg_" + uuid.uuid4().hex[:20], "type": "message", "role": "assistant",
               "model": body.get("model") or "claude-sonnet-4-5", "content": [block],
               "stop_reason": stop, "stop_sequence": None, "usage": usage}
        if not body.get("stream"):
            return self.send_json(200, msg)
        self.start_events()
        self.event("message_start", {"type": "message_start", "message": dict(msg, content=[], stop_reason=None)})
        if block["type"] == "text":
            self.event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
            self.event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": block["text"]}})
        else:
            self.event("content_block_start", {"type": "content_block_start", "index": 0,
                                               "content_block": dict(block, input={})})
            self.event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}})
        self.event("content_block_stop", {"type": "content_block_stop", "index": 0})
        self.event("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                     "usage": {"output_tokens": 5}})
        self.event("message_stop", {"type": "message_stop"})
        self.wfile.flush()

    # OpenAI Responses: Codex. Its shell tool is whichever of these it offers.
    def openai_responses(self, body):
        names = [t.get("name") or (t.get("function") or {}).get("name") or t.get("type")
                 for t in body.get("tools") or [] if isinstance(t, dict)]
        items = body.get("input") if isinstance(body.get("input"), list) else []
        users = [it for it in items if isinstance(it, dict) and it.get("role") == "user"]
        conv = conversation([text_of(m.get("content")) for m in users])
        outputs = [it for it in items if isinstance(it, dict) and it.get("type") in
                   ("function_call_output", "custom_tool_call_output", "local_shell_call_output")]
        if conv and outputs:
            last = outputs[-1]
            log({"conversation": conv["name"], "step": len(outputs) - 1, "result": text_of(last.get("output")), "is_error": False})
        command = step_command(conv, len(outputs))
        cid = "call_" + uuid.uuid4().hex[:16]
        if command is not None and "shell_command" in names:
            item = {"type": "function_call", "id": "fc_" + cid, "call_id": cid, "name": "shell_command",
                    "arguments": json.dumps({"command": command}), "status": "completed"}
        elif command is not None and "exec_command" in names:
            item = {"type": "function_call", "id": "fc_" + cid, "call_id": cid, "name": "exec_command",
                    "arguments": json.dumps({"cmd": command}), "status": "completed"}
        elif command is not None and "shell" in names:
            item = {"type": "function_call", "id": "fc_" + cid, "call_id": cid, "name": "shell",
                    "arguments": json.dumps({"command": ["bash", "-lc", command]}), "status": "completed"}
        else:
            if command is not None:
                log({"conversation": conv["name"], "error": "no shell tool offered", "tools": names})
            item = {"type": "message", "role": "assistant", "id": "msg_" + uuid.uuid4().hex[:16], "status": "completed",
                    "content": [{"type": "output_text", "text": "Done.", "annotations": []}]}
        resp = {"id": "resp_" + uuid.uuid4().hex[:16], "object": "response", "status": "completed",
                "model": body.get("model"), "output": [item],
                "usage": {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
                          "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 15}}
        if body.get("stream") is False:
            return self.send_json(200, resp)
        self.start_events()

        def ev(name, data):
            self.event(name, dict(data, type=name))
        ev("response.created", {"response": dict(resp, status="in_progress", output=[])})
        ev("response.output_item.added", {"output_index": 0, "item": item})
        ev("response.output_item.done", {"output_index": 0, "item": item})
        ev("response.completed", {"response": resp})
        self.wfile.flush()


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with open(PORT_FILE + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(PORT_FILE + ".tmp", PORT_FILE)
    server.serve_forever()


if __name__ == "__main__":
    main()
