"""Serving: an OpenAI-compatible server (`server.create_app`, `server.serve`), its engines (`engine`), and client
adapters (`qwen_agent_llm`). Submodules are imported on use, so the adapters do not pull in the server's dependencies.
"""
