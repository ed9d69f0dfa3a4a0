"""The one exception tree of agentbot; vendor errors are translated into it at each adapter.

    AgentbotError                  anything agentbot raises on purpose
    ├── ConfigError                a setting is missing or malformed (raised at start)
    ├── LLMError                   every configured model failed; `user_message` says why in words
    ├── SandboxError               the code sandbox could not run the code at all (engine down, no image)
    │   └── EngineDownError        the Docker engine holding the workspace does not answer
    ├── PlatformError              the chat platform refused or failed a call
    ├── ToolError                  a tool could not be loaded or described (not: a call failed)
    └── StoreError                 conversation state could not be read or written

A timeout or a failing exit code of user code is *not* an error: it is data in `CodeResult`; so is a
tool call that raised or hung (its `ToolOutcome` says so).
"""


class AgentbotError(Exception):
    """Base of every error agentbot raises on purpose."""

    user_message: str = "Something went wrong inside agentbot."

    def __init__(self, message: str, *, user_message: str | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        if user_message is not None:
            self.user_message = user_message
        # True when the same call may succeed later (rate limit, 5xx, connection): the job is retried.
        self.retryable = retryable


class ConfigError(AgentbotError):
    """A setting is missing or malformed."""


class LLMError(AgentbotError):
    """The language model could not produce a reply (after trying every configured model)."""

    user_message = "The language model did not answer."


class SandboxError(AgentbotError):
    """The code sandbox could not run the code at all (not: the code failed)."""

    user_message = "The code sandbox is not available."


class EngineDownError(SandboxError):
    """The Docker engine that holds the workspace does not answer at all (not: it refused one call)."""

    user_message = "The Docker engine that runs the code sandbox is not reachable."


class PlatformError(AgentbotError):
    """The chat platform refused or failed a call."""

    user_message = "The chat platform refused a message."


class ToolError(AgentbotError):
    """A tool could not be loaded or described (its module does not import, its MCP server does not start)."""

    user_message = "The agent's tools are not available."


class StoreError(AgentbotError):
    """Conversation state could not be read or written."""
