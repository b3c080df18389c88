"""Helpers shared by the hardening tests: damaged data dirs, raw JSON requests, an MCP client call."""
from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path

import httpx
from PIL import Image

DEEP = "[" * 100_000 + "]" * 100_000
SMALL = {"width": 64, "height": 64, "steps": 1}
TIMEOUT = httpx.Timeout(300.0, connect=10.0)


def write_damaged_files(data: Path, config: str, styles: bytes | None, cache: str | None) -> None:
    """Config / styles / cache files as the audit found them; styles None makes styles.csv a folder."""
    data.mkdir(parents=True, exist_ok=True)
    (data / "config.json").write_text(config)
    if styles is None:
        (data / "styles.csv").mkdir()
    else:
        (data / "styles.csv").write_bytes(styles)
    if cache is not None:
        (data / "cache.json").write_text(cache)


def raw_json(client: httpx.Client, path: str, text: str, **kwargs) -> httpx.Response:
    """POST JSON text as written (Python's json would refuse to write NaN)."""
    return client.post(path, content=text.encode("utf-8", "surrogatepass"),
                       headers={"content-type": "application/json", **kwargs.pop("headers", {})}, **kwargs)


def decode_png(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def mcp_call(base_url: str, tool: str | None, arguments: dict | None = None, auth=None):
    """(tool names, call result or None) through a real MCP client over streamable HTTP."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async def run():
        async with streamablehttp_client(f"{base_url}/gradio_api/mcp/", auth=auth, timeout=120) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                names = [t.name for t in (await session.list_tools()).tools]
                result = await session.call_tool(tool, arguments or {}) if tool else None
                return names, result

    return asyncio.run(run())


def strict_json(path: Path):
    """The file parsed as plain JSON (NaN / Infinity raise)."""
    def refuse(name):
        raise ValueError(name)

    return json.loads(path.read_text(), parse_constant=refuse)
