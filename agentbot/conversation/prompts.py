"""The words agentbot says to the model and about the run: system message, auto reply, run results."""

from __future__ import annotations

from agentbot.conversation.code import CodeResult
from agentbot.conversation.egress import transcript_line

DEFAULT_SYSTEM_MESSAGE = """\
You are a careful assistant who solves tasks by writing code that a colleague runs for you.

How to work:
- When a task needs computing, data, files or charts, reply with exactly one code block per message,
  fenced as ```python or ```sh. The code must be complete and runnable as is; it is executed as soon
  as a person approves it, and its output (exit code and printed text) comes back to you.
- To save the code as a file, make its first line `# filename: <name>`.
- Print the results you need to see. Save charts with matplotlib (`plt.savefig('chart.png')` or
  `plt.show()`); saved images are shown to the people in the conversation.
- Files people share are in the current working directory.
- If the output shows an error, fix it and send the corrected full code block, not a diff.
- If you need something only the people can answer, ask them plainly, without code.
- When the task is done and verified, give a short answer and end your message with the word TERMINATE.
"""

# AutoGen's UserProxyAgent sends its `default_auto_reply` when it has nothing else to say (NEVER mode).
DEFAULT_AUTO_REPLY = "Continue. If the task is complete, reply with TERMINATE."

# Keep execution results fed back to the model within a sane prompt size.
_MAX_OUTPUT_CHARS = 8000


def execution_message(result: CodeResult) -> str:
    """The result in AutoGen 0.2's own words, so prompts written for AutoGen keep working."""
    outcome = "execution succeeded" if result.exit_code == 0 else "execution failed"
    output = result.output
    if len(output) > _MAX_OUTPUT_CHARS:
        output = output[:_MAX_OUTPUT_CHARS] + "\n... (output truncated)"
    text = f"exitcode: {result.exit_code} ({outcome})\nCode output: {output}"
    if result.artifacts:
        text += "\nFiles created or changed: " + ", ".join(a.name for a in result.artifacts)
    if network := transcript_line(result.egress):
        text += "\n" + network
    return text


def tool_result_message(text: str) -> str:
    """A tool's result as fed back to the model: kept within the same size as code output."""
    if len(text) > _MAX_OUTPUT_CHARS:
        return text[:_MAX_OUTPUT_CHARS] + "\n... (output truncated)"
    return text


# ---------------------------------------------------------------- agent teams

GROUP_CHAT_ROLE = """\
You are {name}, in a group chat with {others}, and with the people of a chat thread.
Messages from the others are marked with their names. Speak only as {name}; do not write the others'
parts. When the whole task is done, end your message with the word TERMINATE."""

# AutoGen 0.2's `GroupChat.select_speaker_msg` and `select_speaker_prompt_template`, so that selection
# prompts tuned for AutoGen behave the same here.
SELECT_SPEAKER_SYSTEM = """\
You are in a role play game. The following roles are available:
{roles}.
Read the following conversation.
Then select the next role from {agentlist} to play. Only return the role."""

SELECT_SPEAKER_PROMPT = (
    "Read the above conversation. Then select the next role from {agentlist} to play. Only return the role."
)

DELEGATION_INSTRUCTIONS = """\
You lead a team. You can hand sub-tasks to these sub-teams:
{subteams}
To hand over a sub-task, write a line `DELEGATE <sub-team>: <task>` (one line per sub-team, several
lines to run sub-teams in parallel). Each sub-team sees only its task, so make it self-contained.
Their results come back to you as messages; then integrate them into one answer for the people.
When the task is done, end your message with the word TERMINATE."""

NO_SUCH_SUBTEAM = "There is no sub-team named {names}. The sub-teams are: {known}. Delegate again."


def agent_role(own: str, name: str, others: str) -> str:
    """An agent's system message in a group chat: its own role, then how the chat works."""
    role = GROUP_CHAT_ROLE.format(name=name, others=others or "nobody else")
    return f"{own.rstrip()}\n\n{role}" if own.strip() else role
