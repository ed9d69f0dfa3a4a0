"""The tool host: one process per worker that runs Python tools and keeps MCP servers open across steps.

rq forks a work horse per step, and a horse ends with its step; a tool process or MCP server started
there would be started again for every step (an MCP stdio server takes about a second to start). So the
worker's parent process starts this host once (`agentbot.tools.client.ToolHost`), and each horse
asks it over a Unix socket: one JSON line in, one JSON line out, per connection.

    {"op": "describe", "sources": [ToolSource, ...]}   -> {"tools": [ToolSpec, ...]} | {"error": "..."}
    {"op": "call", "source": ToolSource, "call": ToolCall} -> {"text": "...", "is_error": bool}

Python tools run in a reused child process (`agentbot.tools.runner`), killed and started again when a
call outlives the timeout. Each MCP server is one `mcp.Client` session, started on first use; a failed
call (the server died, say) closes it, and the next call starts it again. The host exits when its
stdin closes: the worker that started it is gone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agentbot.conversation.llm import ToolCall, ToolSpec
from agentbot.conversation.tools import ToolSource
from agentbot.tools.runner import cap

if TYPE_CHECKING:  # the SDK is imported when a server is first used: a host without MCP starts fast
    import mcp_types
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

logger = logging.getLogger(__name__)

READY = "READY"
_LINE_LIMIT = 64 * 1024 * 1024  # a reply line may carry a capped result; JSON escaping can double it
_STOP_WAIT = 5.0


class PythonTools:
    """The runner child: started on first use, reused, killed when a call outlives `timeout`."""

    def __init__(self, timeout: float, limit: int, path: Sequence[str] = ()) -> None:
        self.timeout = timeout
        self.limit = limit
        self.path = tuple(path)
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def ask(self, request: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        """One request to the runner; a hang or a dead runner becomes an error reply."""
        async with self._lock:
            process = await self._started()
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write((json.dumps(request) + "\n").encode())
            await process.stdin.drain()
            try:
                line = await asyncio.wait_for(process.stdout.readline(), timeout)
            except TimeoutError:
                await self.stop()
                return _failed(f"the tool did not return within {timeout:g} s, so it was stopped.")
            if not line:
                code = await process.wait()
                self._process = None
                return _failed(f"the tool's process ended during the call (exit code {code}).")
            return dict(json.loads(line))

    async def _started(self) -> asyncio.subprocess.Process:
        if self._process is None or self._process.returncode is not None:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "agentbot.tools.runner",
                json.dumps(self.path),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=_LINE_LIMIT,
            )
        return self._process

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()


class McpServer:
    """One MCP server's session, held open by a task of its own until closed or broken."""

    def __init__(self, source: ToolSource) -> None:
        self.source = source
        self.client: Client | None = None
        self.tools: list[mcp_types.Tool] = []
        self.error: BaseException | None = None
        self._ready = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def open(self) -> bool:
        return self.client is not None and self._task is not None and not self._task.done()

    async def start(self, timeout: float) -> None:
        self._task = asyncio.create_task(self._hold())
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            await self.close()
            raise ConnectionError(
                f"the MCP server {self.source.name} did not start within {timeout:g} s"
            ) from None
        if self.client is None:
            raise ConnectionError(f"the MCP server {self.source.name} did not start: {_reason(self.error)}")

    async def _hold(self) -> None:
        from mcp import Client  # noqa: PLC0415  # see TYPE_CHECKING above

        try:
            async with Client(self._target()) as client:
                self.tools = await _list_tools(client)
                self.client = client
                self._ready.set()
                await self._closing.wait()
        except Exception as exc:  # any way a server can fail to start or break: said in the result
            self.error = exc
            logger.warning("MCP server %s: %s", self.source.name, _reason(exc))
        finally:
            self.client = None
            self._ready.set()

    def _target(self) -> StdioServerParameters | str:
        from mcp.client.stdio import StdioServerParameters, get_default_environment  # noqa: PLC0415

        if self.source.url is not None:
            return self.source.url
        env = {**get_default_environment(), **self.source.env}
        return StdioServerParameters(command=self.source.command or "", args=list(self.source.args), env=env)

    async def call(self, call: ToolCall, arguments: dict[str, Any], timeout: float) -> tuple[str, bool]:
        client = self.client
        assert client is not None
        result = await asyncio.wait_for(client.call_tool(call.name, arguments), timeout)
        return _content_text(result), bool(result.is_error)

    async def close(self) -> None:
        self._closing.set()
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._task, _STOP_WAIT)


class Host:
    """Answers describe and call requests for Python tools and MCP servers."""

    def __init__(self, timeout: float, limit: int, path: Sequence[str] = ()) -> None:
        self.timeout = timeout
        self.limit = limit
        self.python = PythonTools(timeout, limit, path)
        self._servers: dict[str, McpServer] = {}
        self._starting = asyncio.Lock()

    async def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "ping":
            return {"ok": True}
        if op == "describe":
            return await self.describe([ToolSource.model_validate(s) for s in request.get("sources", [])])
        if op == "call":
            source = ToolSource.model_validate(request["source"])
            text, failed = await self.call(source, ToolCall.model_validate(request["call"]))
            return {"text": text, "is_error": failed}
        return {"error": f"unknown request {op!r}"}

    async def describe(self, sources: Sequence[ToolSource]) -> dict[str, Any]:
        specs: list[ToolSpec] = []
        for source in sources:
            try:
                found = await self._describe(source)
            except (ConnectionError, LookupError) as exc:
                return {"error": str(exc)}
            taken = {spec.name for spec in specs}
            specs += [spec for spec in found if spec.name not in taken]  # the first of a name wins
        return {"tools": [spec.model_dump() for spec in specs]}

    async def _describe(self, source: ToolSource) -> list[ToolSpec]:
        if source.kind == "python":
            reply = await self.python.ask({"op": "describe", "path": source.name}, timeout=self.timeout)
            if "spec" not in reply:
                raise LookupError(f"the tool {source.name}: {reply.get('error') or reply.get('text')}")
            return [ToolSpec.model_validate(reply["spec"])]
        server = await self._server(source)
        return [
            ToolSpec(
                name=tool.name,
                description=tool.description or "",
                parameters=dict(tool.input_schema),
                source=source.name,
                server=source.name,
            )
            for tool in server.tools
            if not source.include or tool.name in source.include
        ]

    async def call(self, source: ToolSource, call: ToolCall) -> tuple[str, bool]:
        if source.kind == "python":
            request = {"op": "call", "path": source.name, "arguments": call.arguments, "cap": self.limit}
            reply = await self.python.ask(request, timeout=self.timeout)
            return str(reply.get("text", reply.get("error", ""))), bool(reply.get("is_error", True))
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError as exc:
            return f"Error: the arguments are not JSON ({exc}).", True
        if not isinstance(arguments, dict):
            return "Error: the arguments must be a JSON object.", True
        return await self._call_mcp(source, call, arguments)

    async def _call_mcp(
        self, source: ToolSource, call: ToolCall, arguments: dict[str, Any]
    ) -> tuple[str, bool]:
        try:
            server = await self._server(source)
        except ConnectionError as exc:
            return f"Error: {exc}", True
        try:
            text, failed = await server.call(call, arguments, self.timeout)
            return cap(text, self.limit), failed  # the runner caps Python tools' results itself
        except TimeoutError:
            return f"Error: the MCP server {source.name} did not answer within {self.timeout:g} s.", True
        except Exception as exc:  # the session broke (the server died): closed here, started again next call
            await self._drop(source)
            return f"Error: the MCP server {source.name} failed during the call: {_reason(exc)}", True

    async def _server(self, source: ToolSource) -> McpServer:
        """The open session of `source`, started (again) when there is none or the last one broke."""
        async with self._starting:
            key = source.model_dump_json()
            server = self._servers.get(key)
            if server is not None and server.open:
                return server
            if server is not None:
                logger.warning("MCP server %s stopped; starting it again", source.name)
                await server.close()
            server = McpServer(source)
            self._servers[key] = server
            await server.start(self.timeout + 30)  # first start: `npx` may fetch a package
            return server

    async def _drop(self, source: ToolSource) -> None:
        server = self._servers.pop(source.model_dump_json(), None)
        if server is not None:
            await server.close()

    async def close(self) -> None:
        for server in list(self._servers.values()):
            await server.close()
        self._servers.clear()
        await self.python.stop()


async def _list_tools(client: Client) -> list[mcp_types.Tool]:
    tools: list[mcp_types.Tool] = []
    cursor: str | None = None
    for _ in range(100):  # a bounded walk over the pages
        page = await client.list_tools(cursor=cursor)
        tools += page.tools
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _content_text(result: mcp_types.CallToolResult) -> str:
    """The result's content as text: text parts as they are, others named by their type."""
    import mcp_types  # noqa: PLC0415  # see TYPE_CHECKING above

    parts: list[str] = []
    for item in result.content:
        if isinstance(item, mcp_types.TextContent):
            parts.append(item.text)
        else:
            parts.append(f"[{item.type} content]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False, default=str))
    return "\n".join(parts)


def _failed(why: str) -> dict[str, Any]:
    return {"text": f"Error: {why}", "is_error": True}


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "no reason given"
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _reason(exc.exceptions[0])
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# ---------------------------------------------------------------- the process


async def _serve_connection(host: Host, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        line = await reader.readline()
        if line:
            try:
                reply = await host.answer(json.loads(line))
            except Exception as exc:  # a malformed request: answered, never the end of the host
                logger.exception("tool host: request failed")
                reply = {"error": _reason(exc), "text": f"Error: {_reason(exc)}", "is_error": True}
            writer.write((json.dumps(reply) + "\n").encode())
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass  # the horse that asked is gone (killed mid-call): nobody to answer
    finally:
        writer.close()


async def serve(
    socket_path: str, timeout: float, limit: int, stop: asyncio.Event, path: Sequence[str] = ()
) -> None:
    host = Host(timeout, limit, path)
    server = await asyncio.start_unix_server(
        lambda r, w: _serve_connection(host, r, w), path=socket_path, limit=_LINE_LIMIT
    )
    print(READY, flush=True)
    try:
        await stop.wait()
    finally:
        server.close()
        await host.close()


def _stop_on_eof(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """The worker holds our stdin open; when it is gone, so are we."""
    sys.stdin.buffer.read()
    loop.call_soon_threadsafe(stop.set)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="agentbot's tool host (started by the worker)")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--limit", type=int, default=64_000)
    parser.add_argument("--path", default="[]", help="the worker's import path, as a JSON list")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="tool host: %(levelname)s %(message)s")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        threading.Thread(target=_stop_on_eof, args=(loop, stop), daemon=True).start()
        await serve(args.socket, args.timeout, args.limit, stop, json.loads(args.path))

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
