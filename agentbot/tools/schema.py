"""A Python function as a tool the model can call: its JSON schema from the signature, hints and docstring.

As AutoGen's `register_function` does (`get_function_schema`): the parameters become a pydantic model
whose JSON schema is the function's `parameters`; `Annotated[int, "what it is"]` (or a pydantic
`Field(description=...)`) describes a parameter; the docstring's first paragraph describes the tool.
The same model validates the model's arguments before the call, so a wrong call is answered in words.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import json
from collections.abc import Callable
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from agentbot.conversation.llm import ToolSpec


class _Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid")


def load(path: str) -> Callable[..., Any]:
    """The function at `package.module:function` (`ImportError`/`AttributeError` if there is none)."""
    module_name, _, attribute = path.partition(":")
    function = getattr(importlib.import_module(module_name), attribute)
    if not callable(function):
        raise TypeError(f"{path} is not a function")
    return function  # type: ignore[no-any-return]  # getattr of operator code is Any by nature


@functools.cache  # built once per function: building a pydantic model takes about a millisecond
def arguments_model(function: Callable[..., Any]) -> type[BaseModel]:
    """A pydantic model of the function's parameters (names, types, defaults, descriptions)."""
    hints = get_type_hints(function, include_extras=True)
    fields: dict[str, Any] = {}
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        hint = _described(hints.get(name, Any))
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[name] = (hint, default)
    return create_model(f"{function.__name__}_arguments", __base__=_Arguments, **fields)


def _described(hint: Any) -> Any:
    """AutoGen's `Annotated[T, "description"]` as pydantic's `Annotated[T, Field(description=...)]`."""
    if get_origin(hint) is not Annotated:
        return hint
    base, *extras = get_args(hint)
    notes = [extra for extra in extras if isinstance(extra, str)]
    others = [extra for extra in extras if not isinstance(extra, str)]
    if notes:
        others.append(Field(description=" ".join(notes)))
    return Annotated[(base, *others)] if others else base


def spec(path: str, function: Callable[..., Any]) -> ToolSpec:
    """The tool the model is offered for `function` (named by the function's own name)."""
    schema = arguments_model(function).model_json_schema()
    schema.pop("title", None)
    schema.pop("additionalProperties", None)
    for field in schema.get("properties", {}).values():
        field.pop("title", None)
    doc = inspect.getdoc(function) or ""
    description = doc.split("\n\n")[0].replace("\n", " ").strip()
    return ToolSpec(name=function.__name__, description=description, parameters=schema, source=path)


def call(function: Callable[..., Any], arguments: str) -> tuple[str, bool]:
    """Validate the model's `arguments` (JSON text) and call; the result as text, and whether it failed."""
    try:
        given = json.loads(arguments or "{}")
    except ValueError as exc:
        return f"Error: the arguments are not JSON ({exc}).", True
    if not isinstance(given, dict):
        return "Error: the arguments must be a JSON object.", True
    try:
        validated = arguments_model(function).model_validate(given)
    except ValidationError as exc:
        return f"Error: invalid arguments: {_errors(exc)}", True
    try:
        result = function(**{name: getattr(validated, name) for name in type(validated).model_fields})
        if inspect.iscoroutine(result):  # an `async def` tool: run to completion here
            result = asyncio.run(result)
    except Exception as exc:  # operator code may raise anything: it becomes the result, in words
        return f"Error: {type(exc).__name__}: {exc}", True
    return as_text(result), False


def as_text(result: object) -> str:
    """A return value as the model reads it: text as is, anything else as JSON (or its `str`)."""
    if isinstance(result, str):
        return result
    if isinstance(result, BaseModel):
        return result.model_dump_json()
    try:
        return json.dumps(result, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(result)


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'arguments'}: {error['msg']}"
        for error in exc.errors()
    )
