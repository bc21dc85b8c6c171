"""Tool calls: a safe parser for model text, argument binding against a schema, canonical text.

Model text is read with ``ast.parse`` (Python call syntax, BFCL's format) or ``json.loads``
(tool-call objects); nothing is ever evaluated. A call is a bare function name with literal
arguments: strings, numbers, booleans, None, and lists, tuples and dicts of those. Anything
else (attribute chains, nested calls, names, lambdas, f-strings, operators, a keyword argument or
JSON key given twice) is refused with a ``CallError`` whose message is written for the model to
read and correct.

``Call.canonical()`` renders a call as one line of keyword arguments, ``name(a=1, b='x')``,
which parses back to the same call and which Python (and so BFCL's own executor) reads as the
same values.
"""

import ast
import json
import keyword
import math
import re
from dataclasses import dataclass, field
from typing import Any

MAX_CHARS = 20_000  # longest BFCL ground-truth call is ~6.8k characters
MAX_DEPTH = 16  # nesting of argument values; BFCL needs 3

# Wrappers models put around calls: <tool_call>...</tool_call>, <TOOLCALL>...</TOOLCALL>, fences.
_TAGGED = re.compile(r"<(tool_call|TOOLCALL)>(.*?)</\1>", re.DOTALL)
_FENCE = re.compile(r"^```[\w-]*\s*\n?(.*?)\n?```$", re.DOTALL)
_JSON_START = re.compile(r"^\s*(\{|\[\s*\{)")


class CallError(ValueError):
    """Text or arguments that cannot become a tool call; the message is meant for the model."""


@dataclass(slots=True)
class Call:
    """One tool call: a function name, keyword arguments, and (before binding) positional ones."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    args: tuple[Any, ...] = ()

    def canonical(self) -> str:
        """One-line Python text of the call, ``name(a=1, b='x')``; parses back to the same call."""
        parts = [_literal_text(v) for v in self.args]
        parts += [f"{k}={_literal_text(v)}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(parts)})"


def parse_calls(text: str, max_chars: int = MAX_CHARS, max_depth: int = MAX_DEPTH) -> list[Call]:
    """Parse model text into calls, or raise ``CallError``.

    Accepts ``[f(a=1), g()]``, ``f(a=1)``, JSON ``{"name": ..., "arguments": {...}}`` (or a list
    of them), optionally inside a code fence or ``<tool_call>`` / ``<TOOLCALL>`` tags. Empty text
    and ``[]`` mean no calls.
    """
    if not isinstance(text, str):
        raise CallError(f"expected text, got {type(text).__name__}")
    if len(text) > max_chars:
        raise CallError(f"tool call text is too long ({len(text)} characters, limit {max_chars})")
    tagged = _TAGGED.findall(text)
    blocks = [body for _, body in tagged] if tagged else [text]
    calls: list[Call] = []
    for block in blocks:
        block = block.strip()
        fenced = _FENCE.match(block)
        block = fenced.group(1).strip() if fenced else block
        if not block:
            continue
        if _JSON_START.match(block):
            calls += _parse_json(block, max_depth)
        else:
            calls += _parse_python(block, max_depth)
    return calls


def bind_call(call: Call, schema: dict) -> Call:
    """The call with positional arguments named in schema order and every argument checked.

    Raises ``CallError`` for too many positional arguments, an argument given twice, unknown or
    missing required arguments, non-literal values and values of the wrong type.
    """
    parameters = schema.get("parameters") or {}
    properties: dict = parameters.get("properties") or {}
    required = parameters.get("required") or []
    names = list(properties)
    if len(call.args) > len(names):
        raise CallError(f"{call.name} takes {len(names)} arguments but {len(call.args)} were given")
    kwargs = dict(zip(names, call.args, strict=False))
    for name, value in call.kwargs.items():
        if name in kwargs:
            raise CallError(f"{call.name}: argument '{name}' is given twice")
        kwargs[name] = value
    unknown = [name for name in kwargs if name not in properties]
    if unknown:
        expected = ", ".join(names) or "none"
        raise CallError(f"{call.name}: unknown argument(s) {_quoted(unknown)}; parameters are: {expected}")
    missing = [name for name in required if name not in kwargs]
    if missing:
        raise CallError(f"{call.name}: missing required argument(s) {_quoted(missing)}")
    for name, value in kwargs.items():
        check_literal(value)
        problem = _type_problem(value, properties[name], optional=name not in required)
        if problem:
            raise CallError(f"{call.name}: argument '{name}' {problem}")
    return Call(call.name, kwargs)


def check_literal(value: Any, max_depth: int = MAX_DEPTH, depth: int = 1) -> None:
    """Raise ``CallError`` unless ``value`` is a literal tree of the accepted types and depth.

    An argument's own value is at depth 1, the items inside it at depth 2, and so on.
    """
    if depth > max_depth:
        raise CallError(f"argument values are nested too deeply (limit {max_depth})")
    if value is None or type(value) in (str, int, float, bool):
        return
    if type(value) in (list, tuple):
        for item in value:
            check_literal(item, max_depth, depth + 1)
        return
    if type(value) is dict:
        for key, item in value.items():
            if key is not None and type(key) not in (str, int, float, bool):
                raise CallError(f"dict keys must be strings or numbers, not {type(key).__name__}")
            check_literal(item, max_depth, depth + 1)
        return
    raise CallError(f"{type(value).__name__} is not a literal value")


# ---------------------------------------------------------------------------- Python syntax


def _parse_python(text: str, max_depth: int) -> list[Call]:
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise CallError(f"not valid call syntax ({e.msg}); write [func(arg=value), ...]") from None
    except (ValueError, RecursionError, MemoryError) as e:  # null bytes, pathological nesting
        raise CallError(f"not valid call syntax ({type(e).__name__})") from None
    node = tree.body
    items = node.elts if isinstance(node, (ast.List, ast.Tuple)) else [node]
    return [_call_from_node(item, max_depth) for item in items]


def _call_from_node(node: ast.expr, max_depth: int) -> Call:
    if not isinstance(node, ast.Call):
        raise CallError(f"expected a function call, got {_describe(node)}; write [func(arg=value), ...]")
    if isinstance(node.func, ast.Attribute):
        raise CallError("attribute calls like 'a.b(...)' are not allowed; call the function by its bare name")
    if not isinstance(node.func, ast.Name):
        raise CallError(f"the function must be a plain name, not {_describe(node.func)}")
    name = node.func.id
    args = []
    for arg in node.args:
        if isinstance(arg, ast.Starred):
            raise CallError(f"{name}: *arguments are not allowed")
        args.append(_literal_from_node(arg, max_depth, 1))
    kwargs = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise CallError(f"{name}: **arguments are not allowed")
        if kw.arg in kwargs:  # ast.parse accepts it; Python's compiler refuses it
            raise CallError(f"{name}: keyword argument repeated: {kw.arg}; give each argument once")
        kwargs[kw.arg] = _literal_from_node(kw.value, max_depth, 1)
    return Call(name, kwargs, tuple(args))


def _literal_from_node(node: ast.expr, max_depth: int, depth: int) -> Any:
    if depth > max_depth:
        raise CallError(f"argument values are nested too deeply (limit {max_depth})")
    if isinstance(node, ast.Constant):
        if node.value is None or type(node.value) in (str, int, float, bool):
            return node.value
        raise CallError(f"{type(node.value).__name__} literals are not supported")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = node.operand
        if isinstance(operand, ast.Constant) and type(operand.value) in (int, float):
            return -operand.value if isinstance(node.op, ast.USub) else operand.value
    if isinstance(node, ast.List):
        return [_literal_from_node(e, max_depth, depth + 1) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_literal_from_node(e, max_depth, depth + 1) for e in node.elts)
    if isinstance(node, ast.Dict):
        result = {}
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:
                raise CallError("**-unpacking inside a dict is not allowed")
            k = _literal_from_node(key, max_depth, depth + 1)
            if type(k) not in (str, int, float, bool) and k is not None:
                raise CallError("dict keys must be strings or numbers")
            result[k] = _literal_from_node(value, max_depth, depth + 1)
        return result
    raise CallError(f"{_describe(node)} is not a literal value; arguments must be literals")


def _describe(node: ast.AST) -> str:
    """A model-readable name for an AST node that is not allowed where it appears."""
    if isinstance(node, ast.Name):
        return f"the name '{node.id}' (quote text as a string)"
    if isinstance(node, ast.Attribute):
        return "an attribute access"
    if isinstance(node, ast.Call):
        return "a nested call"
    if isinstance(node, ast.JoinedStr):
        return "an f-string"
    if isinstance(node, ast.Lambda):
        return "a lambda"
    if isinstance(node, ast.Set):
        return "a set"
    return f"an expression of type {type(node).__name__}"


# ---------------------------------------------------------------------------- JSON objects


def _reject_constant(name: str) -> None:
    raise CallError(f"{name} is not a valid argument value")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """A JSON object; a repeated key is refused, as json.loads would silently keep its last value."""
    result = {}
    for key, value in pairs:
        if key in result:
            raise CallError(f"the key '{key}' is repeated in a JSON object; give each key once")
        result[key] = value
    return result


def _parse_json(text: str, max_depth: int) -> list[Call]:
    try:
        data = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        raise CallError(f"not valid JSON ({e.msg} at position {e.pos})") from None
    except RecursionError:
        raise CallError("JSON is nested too deeply") from None
    items = data if isinstance(data, list) else [data]
    return [_call_from_json(item, max_depth) for item in items]


def _call_from_json(item: Any, max_depth: int) -> Call:
    if not isinstance(item, dict):
        raise CallError('each JSON tool call must be an object like {"name": ..., "arguments": {...}}')
    if isinstance(item.get("function"), dict):  # OpenAI style {"type": "function", "function": {...}}
        item = item["function"]
    name = item.get("name", item.get("function"))
    if not isinstance(name, str) or not name.isidentifier():
        raise CallError(f"a JSON tool call needs a function name, got {name!r}")
    arguments = next((item[k] for k in ("arguments", "parameters", "args") if k in item), {})
    if isinstance(arguments, str):  # OpenAI encodes arguments as a JSON string
        try:
            arguments = json.loads(arguments, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
        except (json.JSONDecodeError, RecursionError):
            raise CallError(f"{name}: arguments are not valid JSON") from None
    if not isinstance(arguments, dict):
        raise CallError(f"{name}: arguments must be a JSON object")
    for key in arguments:
        if not key.isidentifier() or keyword.iskeyword(key):
            raise CallError(f"{name}: {key!r} is not a valid argument name")
    for value in arguments.values():
        check_literal(value, max_depth)
    return Call(name, arguments)


# ---------------------------------------------------------------------------- rendering and types


def _literal_text(value: Any) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "1e999" if value > 0 else "-1e999"  # repr() gives 'inf', which is a name, not a literal
    if isinstance(value, list):
        return "[" + ", ".join(_literal_text(v) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(_literal_text(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal_text(k)}: {_literal_text(v)}" for k, v in value.items()) + "}"
    return repr(value)


# Python types accepted for each schema type. bool is an int subclass, so it is excluded by hand.
_ACCEPTED = {
    "string": (str,),
    "integer": (int,),
    "float": (int, float),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list, tuple),
    "tuple": (list, tuple),
    "dict": (dict,),
    "object": (dict,),
}


def _type_problem(value: Any, spec: dict, optional: bool) -> str | None:
    """Why ``value`` does not fit the schema ``spec`` (a short phrase), or None when it fits."""
    if value is None and (optional or spec.get("nullable")):
        return None
    expected = spec.get("type")
    kinds = expected if isinstance(expected, list) else [expected]  # JSON-schema unions
    if not any(_fits(value, kind) for kind in kinds):
        return f"must be of type {' or '.join(kinds)}, got {type(value).__name__} {_short(value)}"
    if "enum" in spec and value not in spec["enum"]:
        return f"must be one of {spec['enum']}, got {_short(value)}"
    items = spec.get("items")
    if expected == "array" and isinstance(items, dict):
        for i, item in enumerate(value):
            problem = _type_problem(item, items, optional=False)
            if problem:
                return f"item {i} {problem}"
    return None


def _fits(value: Any, kind: str | None) -> bool:
    accepted = _ACCEPTED.get(kind)
    if accepted is None:  # "any", or a type this checker does not know
        return True
    return isinstance(value, accepted) and (kind == "boolean" or not isinstance(value, bool))


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _quoted(names: list[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)
