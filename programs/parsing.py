"""Act's ``calls`` text as ``Call`` objects, whatever shape a model writes them in.

``envs.calls.parse_calls`` reads one block: Python call syntax, a JSON call object or list, a
whole-block code fence or ``<tool_call>`` tags. Models also write calls one per line (Python or
JSON), wrap a fence in prose, or say "none" for no calls; this module handles those on top and
never evaluates anything.
"""

import ast
import re

from parlmt.envs import Call, CallError, parse_calls

# What models write for "no calls" in the calls field (compared case-insensitively, trimmed).
NO_CALLS = {"", "[]", "none", "null", "n/a", "no calls", "no call", "no tool calls", "(none)", "[none]", "{}"}
_FENCED = re.compile(r"```[\w-]*\s*\n(.*?)\n?```", re.DOTALL)
_FIELD_MARKER = re.compile(r"\[\[ ## (\w+) ## \]\]")  # DSPy ChatAdapter's field headers


def extract_calls(text: str) -> list[Call]:
    """The calls in ``text`` (empty for "no calls"), or ``CallError`` with a message for the model."""
    stripped = text.strip()
    if stripped.lower().rstrip(".") in NO_CALLS:
        return []
    try:
        return parse_calls(stripped)
    except CallError as error:
        # A fence inside prose ("Here you go:\n```json ...```") holds the calls.
        for block in _FENCED.findall(stripped):
            try:
                return parse_calls(block.strip())
            except CallError:
                continue
        quoted = _quoted_calls(stripped)
        if quoted:  # ["cd(folder='a')", ...]: calls written as strings
            return quoted
        lines = [line.strip().rstrip(",") for line in stripped.splitlines() if line.strip()]
        if len(lines) > 1:  # one call per line, which no single-block grammar accepts
            try:
                return [call for line in lines for call in parse_calls(line)]
            except CallError:
                pass
        raise error


def _quoted_calls(text: str) -> list[Call]:
    """Calls from a list of call strings, or [] when ``text`` is not one (read as a literal, never run)."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return []
    if not isinstance(value, list | tuple) or not value or not all(isinstance(v, str) for v in value):
        return []
    try:
        return [call for item in value for call in parse_calls(item)]
    except CallError:
        return []


def salvage_calls(raw: str) -> list[Call]:
    """Calls from an LM response the adapter could not parse (say, ``[[ ## calls ## ]]`` written
    but ``reply`` left out, or bare calls with no field markers at all); ``CallError`` if none."""
    parts = _FIELD_MARKER.split(raw)
    sections = dict(zip(parts[1::2], parts[2::2], strict=True))
    calls = extract_calls(sections["calls"] if "calls" in sections else _FIELD_MARKER.sub("", raw))
    if not calls:
        raise CallError("no tool calls found in the response")
    return calls
