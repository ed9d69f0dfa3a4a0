"""Tools agents call: Python functions and MCP servers behind the `Toolbox` port, run by a tool host."""
