# An MCP server on the official Python SDK's low-level server with its (experimental, MCP
# 2025-11-25) tasks: the tool "note" runs as a task when asked to, and finishes only once the
# file release-TEXT exists in the directory given; every finished note is written to a log.
import os
import sys

import anyio
import mcp.types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

log, directory = sys.argv[1], sys.argv[2]
server = Server("tasks")
server.experimental.enable_tasks()


@server.list_tools()
async def list_tools():
    return [types.Tool(name="note", description="Write a note.",
                       inputSchema={"type": "object", "properties": {"text": {"type": "string"}}},
                       execution=types.ToolExecution(taskSupport="optional"))]


@server.call_tool()
async def call_tool(name, arguments):
    text = arguments.get("text", "")

    async def work(task):
        while not os.path.exists(os.path.join(directory, "release-" + text)):
            await anyio.sleep(0.02)
        with open(log, "a") as f:
            f.write("note " + text + "\n")
        return types.CallToolResult(content=[types.TextContent(type="text", text="noted: " + text)])

    ctx = server.request_context
    if ctx.experimental.is_task:
        return await ctx.experimental.run_task(work)
    return (await work(None)).content


async def main():
    async with stdio_server() as (r, w):
        await server.run(r, w, server.create_initialization_options())


anyio.run(main)
