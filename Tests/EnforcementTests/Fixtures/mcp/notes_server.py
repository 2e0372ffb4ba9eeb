# An MCP server on the official Python SDK: two tools, each call written to a log, so a test
# can tell which calls reached the server.
import sys
from mcp.server.fastmcp import FastMCP

log = sys.argv[1]
server = FastMCP("notes")


def record(line):
    with open(log, "a") as f:
        f.write(line + "\n")


@server.tool()
def note(text: str) -> str:
    """Write a note."""
    record("note " + text)
    return "noted: " + text


@server.tool()
def echo(text: str) -> str:
    """Say it back."""
    record("echo " + text)
    return text


server.run()
