# An MCP client on the official Python SDK, in steps: each step is a list of tool calls, made
# once the file go-N exists in the directory given; every result is printed as a JSON line.
import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

steps = json.loads(sys.argv[2])
directory = sys.argv[1]


def say(**fields):
    print(json.dumps(fields), flush=True)


async def wait_for(name):
    while not os.path.exists(os.path.join(directory, name)):
        await asyncio.sleep(0.02)


async def main():
    params = StdioServerParameters(command=sys.argv[3], args=sys.argv[4:], env=dict(os.environ))
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as session:
            await session.initialize()
            tools = await session.list_tools()
            say(step=0, tools=sorted(t.name for t in tools.tools))
            for n, calls in enumerate(steps, start=1):
                await wait_for(f"go-{n}")
                for tool, text in calls:
                    try:
                        res = await asyncio.wait_for(session.call_tool(tool, {"text": text}), 10)
                        say(step=n, tool=tool, text=text, isError=res.isError, content=res.content[0].text if res.content else "")
                    except Exception as e:  # the server died: a clean error, not a hang
                        say(step=n, tool=tool, text=text, exception=type(e).__name__, message=str(e))
                        return


try:
    asyncio.run(main())
except BaseException as e:  # what is left of the session going away
    say(step=-1, exception=type(e).__name__, message=str(e))
