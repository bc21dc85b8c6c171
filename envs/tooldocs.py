"""Compact tool documentation for prompts.

BFCL's prompt lists the schemas as indented JSON and every function's description repeats its
class blurb ("This tool belongs to the Gorilla file system. It is a simple file system that
...") and a closing note ("Note that the provided function is in Python 3 syntax."). The
compact form keeps every name, parameter, type, required flag, default and description, and
prints each blurb once above its functions and the shared note once at the top::

    Note that the provided function is in Python 3 syntax.
    Optional parameters show their default.

    ## This tool belongs to the Gorilla file system. It is a simple file system ...
    ls(a: bool = False) -- List the contents of the current directory.
      a: Show hidden files and directories. Default to False.

``brief=True`` keeps only each function's signature and the first sentence of its own text (and of
each blurb): about half the tokens, for students whose prompt length is the cost that matters.
"""

import os
import re
from collections.abc import Sequence

BLURB_MARKER = "Tool description:"  # BFCL separates the class blurb from the function's own text
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+")
_TYPE_NAMES = {
    "string": "str",
    "integer": "int",
    "float": "float",
    "number": "float",
    "boolean": "bool",
    "array": "list",
    "dict": "dict",
    "object": "dict",
    "tuple": "tuple",
}


TOOL_DOCS = ("full", "brief")  # the styles render_tool_docs writes (an agent's ``tool_docs`` option)


def render_tool_docs(schemas: Sequence[dict], brief: bool = False) -> str:
    """Prompt text for tool schemas (BFCL/OpenAI-style dicts with name, description, parameters)."""
    split = [_split_description(s.get("description", "")) for s in schemas]
    if brief:
        split = [(_first_sentence(blurb), _first_sentence(own)) for blurb, own in split]
    note = _shared_note([own for _, own in split])
    lines = [note] if note else []
    lines.append("Optional parameters show their default.")
    blurb_shown = None
    for schema, (blurb, own) in zip(schemas, split, strict=True):
        if blurb and blurb != blurb_shown:
            lines += ["", f"## {blurb}"]
            blurb_shown = blurb
        if note and own.endswith(note):
            own = own[: -len(note)].rstrip()
        lines += _function_lines(schema, own)[:1] if brief else _function_lines(schema, own)
    return "\n".join(lines)


def _function_lines(schema: dict, description: str) -> list[str]:
    parameters = schema.get("parameters") or {}
    properties: dict = parameters.get("properties") or {}
    required = set(parameters.get("required") or [])
    signature = ", ".join(_parameter_text(name, spec, name in required) for name, spec in properties.items())
    head = f"{schema['name']}({signature})"
    lines = [f"{head} -- {description}" if description else head]
    for name, spec in properties.items():
        lines += _parameter_lines(name, spec, "  ")
    return lines


def _parameter_text(name: str, spec: dict, required: bool) -> str:
    text = f"{name}: {_type_text(spec)}"
    if required:
        return text
    if "default" not in spec:
        return f"[{text}]"
    default = spec["default"]
    return f"{text} = {'None' if default == 'None' else repr(default)}"  # BFCL writes None as 'None'


def _parameter_lines(name: str, spec: dict, indent: str) -> list[str]:
    description = _clean(spec.get("description", ""))
    if "enum" in spec:
        description = f"{description} One of: {', '.join(map(repr, spec['enum']))}.".strip()
    lines = [f"{indent}{name}: {description}"] if description else []
    nested = spec.get("properties") or {}
    if nested and not lines:
        lines.append(f"{indent}{name}:")
    for key, sub in nested.items():
        sub_description = _clean(sub.get("description", ""))
        lines.append(f"{indent}  {key} ({_type_text(sub)}): {sub_description}".rstrip(": "))
    return lines


def _type_text(spec: dict) -> str:
    kind = spec.get("type", "any")
    name = _TYPE_NAMES.get(kind, kind)
    items = spec.get("items")
    if kind == "array" and isinstance(items, dict) and "type" in items:
        return f"list[{_type_text(items)}]"
    return name


def _split_description(description: str) -> tuple[str, str]:
    """(class blurb, the function's own text) of a description."""
    blurb, marker, own = description.partition(BLURB_MARKER)
    if not marker:
        return "", _clean(description)
    return _clean(blurb), _clean(own)


def _shared_note(descriptions: list[str]) -> str:
    """Whole trailing sentences that every description ends with, or ''."""
    if len(descriptions) < 2:
        return ""
    suffix = os.path.commonprefix([d[::-1] for d in descriptions])[::-1]
    at_word_start = suffix[:1].isspace() or all(
        len(d) == len(suffix) or d[-len(suffix) - 1].isspace() for d in descriptions
    )
    pieces = _SENTENCE_BREAK.split(suffix.strip())
    if not (at_word_start and pieces[0][:1].isupper()):
        pieces = pieces[1:]  # the first piece is the tail of sentences that differ
    return " ".join(pieces)


def _first_sentence(text: str) -> str:
    return _SENTENCE_BREAK.split(text, maxsplit=1)[0]


def _clean(text: str) -> str:
    return " ".join(text.split())
