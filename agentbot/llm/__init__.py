"""Language-model adapters for the `LLM` port: OpenAI Chat Completions and compatible servers."""

from agentbot.llm.openai_chat import ModelConfig, OpenAIChat

__all__ = ["ModelConfig", "OpenAIChat"]
