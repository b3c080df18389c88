"""--mcp: Gradio's MCP server offers txt2img (and only that) as a tool, going through the shared queue."""
import httpx

from tests.server_fixture import start_server


def test_mcp_lists_only_the_txt2img_tool(tmp_path, tiny_sd15):
    with start_server(tmp_path, tiny_sd15.single_file.parent, ["--mcp", "--ckpt", str(tiny_sd15.single_file)]) as (url, _):
        tools = httpx.get(f"{url}/gradio_api/mcp/schema", timeout=30).json()
        assert [t["name"] for t in tools] == ["txt2img_tool"]
        props = tools[0]["inputSchema"]["properties"]
        assert {"prompt", "negative_prompt", "steps", "seed", "width", "height"} <= set(props)
        assert "prompt syntax" in props["prompt"]["description"]
