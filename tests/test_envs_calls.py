"""The safe call parser, argument binding and canonical text, with property-based fuzzing."""

import builtins
import keyword
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import parlmt.envs
from parlmt.envs import Call, CallError, bind_call, make_env, parse_calls

ENVS_DIR = str(Path(parlmt.envs.__file__).parent)

SCHEMA = {
    "name": "move",
    "description": "Move a file.",
    "parameters": {
        "type": "dict",
        "properties": {
            "source": {"type": "string", "description": "From."},
            "destination": {"type": "string", "description": "To."},
            "count": {"type": "integer", "description": "How many.", "default": 1},
            "ratio": {"type": "float", "description": "A ratio.", "default": 1.0},
            "tags": {"type": "array", "items": {"type": "string"}, "description": "Tags.", "default": []},
            "mode": {"type": "string", "enum": ["fast", "safe"], "description": "Mode.", "default": "safe"},
        },
        "required": ["source", "destination"],
    },
}


@pytest.mark.parametrize(
    "text",
    [
        "[move(source='a', destination='b')]",
        "move(source='a', destination='b')",
        "  move(source = 'a',destination=\"b\")  ",
        "```python\n[move(source='a', destination='b')]\n```",
        "<TOOLCALL>[move(source='a', destination='b')]</TOOLCALL>",
        '{"name": "move", "arguments": {"source": "a", "destination": "b"}}',
        '```json\n[{"function": "move", "parameters": {"source": "a", "destination": "b"}}]\n```',
        '<tool_call>{"name": "move", "arguments": "{\\"source\\": \\"a\\", \\"destination\\": \\"b\\"}"}</tool_call>',
        '{"type": "function", "function": {"name": "move", "arguments": {"source": "a", "destination": "b"}}}',
    ],
)
def test_parse_accepts_python_json_fences_and_tags(text):
    assert parse_calls(text) == [Call("move", {"source": "a", "destination": "b"})]


def test_parse_several_calls_positional_and_empty():
    calls = parse_calls("[cd('docs'), ls(a=True), mean(numbers=[1, -2.5, +3]), f(x=(1,), y={'k': None})]")
    assert [c.name for c in calls] == ["cd", "ls", "mean", "f"]
    assert calls[0].args == ("docs",) and calls[0].kwargs == {}
    assert calls[2].kwargs == {"numbers": [1, -2.5, 3]}
    assert calls[3].kwargs == {"x": (1,), "y": {"k": None}}
    assert parse_calls("cd('a'), cd('b')") == [Call("cd", args=("a",)), Call("cd", args=("b",))]
    assert parse_calls("") == parse_calls("[]") == parse_calls("```\n```") == []
    two_tags = '<tool_call>{"name": "a"}</tool_call>\n<tool_call>{"name": "b"}</tool_call>'
    assert [c.name for c in parse_calls(two_tags)] == ["a", "b"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("move(source='a'", "not valid call syntax"),
        ("__import__('os').system('touch /tmp/pwned')", "attribute calls"),
        ("os.system('ls')", "attribute calls"),
        ("a.b.c(x=1)", "attribute calls"),
        ("getattr(move, '__globals__')(x=1)", "plain name"),
        ("move(source=lambda: 1)", "a lambda is not a literal"),
        ("move(source=f'{x}')", "an f-string is not a literal"),
        ("move(source=open('/etc/passwd').read())", "a nested call is not a literal"),
        ("move(source=os.environ)", "an attribute access is not a literal"),
        ("move(source=__import__('os'))", "a nested call is not a literal"),
        ("move(source=x)", "the name 'x'"),
        ("move(source=1 + 2)", "BinOp"),
        ("move(source={1, 2})", "a set"),
        ("move(source=b'x')", "bytes literals"),
        ("move(source=1j)", "complex literals"),
        ("move(source=...)", "ellipsis literals"),
        ("move(*args)", "*arguments"),
        ("move(**kwargs)", "**arguments"),
        ("move(source={**d})", "unpacking"),
        ("move(source={(1, 2): 3})", "dict keys"),
        ("move(source='a' " + "x" * 30_000 + "')", "too long"),
        ("move(source=" + "[" * 40 + "]" * 40 + ")", "nested too deeply"),
        ("move(source=" + "(" * 500 + ")" * 500 + ")", "not valid call syntax"),
        ("move(source='a\x00')", "not valid call syntax"),
        ("42", "expected a function call"),
        ("[move(), 'text']", "expected a function call"),
        ("I cannot do that: the file is missing.", "not valid call syntax"),
        ('{"name": "move", "arguments": {"source": NaN}}', "NaN is not a valid"),
        ('{"name": "move", "arguments": [1, 2]}', "must be a JSON object"),
        ('{"arguments": {}}', "needs a function name"),
        ('{"name": "os.system"}', "needs a function name"),
        ('{"name": "move", "arguments": {"class": 1}}', "not a valid argument name"),
        ('{"name": "move", "arguments": "{bad json"}', "not valid JSON"),
        ('[{"name": "move"}, 3]', "must be an object"),
        ('{"name": "move", "arguments": {"a": ' + "[" * 40 + "]" * 40 + "}}", "nested too deeply"),
        ('{"name": ', "not valid JSON"),
        ("[cd(folder='a', folder='b')]", "cd: keyword argument repeated: folder"),
        ("cd('a', folder='a', folder='a')", "keyword argument repeated: folder"),
        ('{"name": "cd", "arguments": {"folder": "a", "folder": "b"}}', "the key 'folder' is repeated"),
        ('{"name": "cd", "name": "ls", "arguments": {}}', "the key 'name' is repeated"),
        ('<tool_call>{"name": "cd", "arguments": "{\\"folder\\": \\"a\\", \\"folder\\": \\"b\\"}"}</tool_call>',
         "the key 'folder' is repeated"),
        ('{"name": "f", "arguments": {"x": {"k": 1, "k": 2}}}', "the key 'k' is repeated"),
    ],
)
def test_parse_refuses_bad_text_with_a_clear_message(text, message):
    with pytest.raises(CallError) as error:
        parse_calls(text)
    assert message in str(error.value)


def test_python_rejects_a_repeated_keyword_and_so_does_the_environment():
    with pytest.raises(SyntaxError, match="keyword argument repeated"):
        compile("cd(folder='a', folder='b')", "<call>", "eval")
    env = make_env("bfcl:base:0")
    for text in ("cd(folder='a', folder='b')", '{"name": "cd", "arguments": {"folder": "a", "folder": "b"}}'):
        (observation,) = env.step(text)
        assert observation.startswith("Error:") and "repeated" in observation
        (result,) = env.trajectory[-1].results
        assert result.error == "parse" and not result.executed


def test_canonical_text_round_trips_and_is_python():
    call = Call("f", {"s": 'it\'s "q"\n', "n": -3, "x": 2.5, "b": True, "z": None, "l": [1, (2,)], "d": {"k": [1e999]}})
    text = call.canonical()
    assert text.startswith("f(s=") and "d={'k': [1e999]}" in text
    assert parse_calls(text) == [call]
    assert Call("cd", {"folder": "a"}).canonical() == "cd(folder='a')"
    assert Call("f", {"t": (), "u": (1, 2)}).canonical() == "f(t=(), u=(1, 2))"


def test_bind_names_positional_arguments_in_schema_order():
    bound = bind_call(Call("move", {"count": 2}, ("a", "b")), SCHEMA)
    assert bound == Call("move", {"source": "a", "destination": "b", "count": 2})
    assert bound.canonical() == "move(source='a', destination='b', count=2)"
    assert bind_call(Call("move", {"source": "a", "destination": "b", "ratio": 3}), SCHEMA).kwargs["ratio"] == 3
    assert bind_call(Call("move", {"source": "a", "destination": "b", "mode": None}), SCHEMA)


@pytest.mark.parametrize(
    "call, message",
    [
        (Call("move", args=("a", "b", 1, 1.0, [], "safe", "extra")), "takes 6 arguments but 7 were given"),
        (Call("move", {"source": "x"}, ("a",)), "'source' is given twice"),
        (Call("move", {"source": "a", "destination": "b", "force": True}), "unknown argument(s) 'force'"),
        (Call("move", {"source": "a"}), "missing required argument(s) 'destination'"),
        (Call("move", {"source": 1, "destination": "b"}), "'source' must be of type string, got int 1"),
        (Call("move", {"source": "a", "destination": "b", "count": 1.5}), "must be of type integer"),
        (Call("move", {"source": "a", "destination": "b", "count": True}), "must be of type integer, got bool"),
        (Call("move", {"source": "a", "destination": None}), "must be of type string, got NoneType"),
        (Call("move", {"source": "a", "destination": "b", "tags": ["x", 2]}), "item 1 must be of type string"),
        (Call("move", {"source": "a", "destination": "b", "tags": "x"}), "must be of type array"),
        (Call("move", {"source": "a", "destination": "b", "mode": "slow"}), "must be one of ['fast', 'safe']"),
        (Call("move", {"source": object(), "destination": "b"}), "object is not a literal value"),
        (Call("move", {"source": "a", "destination": "b", "tags": [print]}), "is not a literal value"),
    ],
)
def test_bind_refuses_bad_arguments(call, message):
    with pytest.raises(CallError) as error:
        bind_call(call, SCHEMA)
    assert message in str(error.value)


def test_bind_accepts_union_types():
    schema = {"name": "f", "parameters": {"properties": {"i": {"type": ["integer", "string"]}}, "required": ["i"]}}
    assert bind_call(Call("f", {"i": "t1"}), schema) and bind_call(Call("f", {"i": 1}), schema)
    with pytest.raises(CallError, match="integer or string"):
        bind_call(Call("f", {"i": 1.5}), schema)


# ---------------------------------------------------------------------------- property-based fuzzing

_literals = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=3)
    ),
    max_leaves=10,
)
_names = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True).filter(lambda n: not keyword.iskeyword(n))
_calls = st.builds(Call, _names, st.dictionaries(_names, _literals, max_size=4))
_call_like_text = st.lists(
    st.sampled_from(
        [
            "cd(",
            "ls(",
            ")",
            "(",
            "[",
            "]",
            ",",
            "=",
            "'",
            '"',
            "a",
            "folder",
            "1",
            "-",
            ".",
            "{",
            "}",
            ":",
            "__import__",
            "lambda",
            "f'",
            "\\",
            " ",
            "\n",
            "<tool_call>",
            "```",
            "True",
            "None",
            "*",
            "os.system",
        ]
    ),
    max_size=30,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(_calls)
def test_fuzz_canonical_round_trip(call):
    assert parse_calls(call.canonical()) == [call]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), _call_like_text))
def test_fuzz_parser_only_returns_calls_or_raises_call_error(text):
    try:
        calls = parse_calls(text)
    except CallError as e:
        assert str(e)
    else:
        assert all(isinstance(c, Call) and isinstance(c.kwargs, dict) for c in calls)


@pytest.mark.parametrize("task_id", ["py:todo:1", "bfcl:base:0"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=200), _call_like_text, _calls.map(lambda c: f"[{c.canonical()}]")))
def test_fuzz_env_step_never_raises_nor_evaluates(monkeypatch, task_id, text):
    def guard(real):
        def checked(*args, **kwargs):
            # Libraries may exec their own code (lazy imports, hypothesis); the environment and the
            # BFCL backends it drives must never evaluate anything.
            caller = sys._getframe(1).f_code.co_filename
            if caller.startswith(ENVS_DIR) or "bfcl_eval" in caller:
                raise AssertionError(f"eval/exec called from {caller} on model text")
            return real(*args, **kwargs)

        return checked

    env = make_env(task_id)
    monkeypatch.setattr(builtins, "eval", guard(builtins.eval))
    monkeypatch.setattr(builtins, "exec", guard(builtins.exec))
    observations = env.step(text)
    assert isinstance(observations, list) and all(isinstance(o, str) for o in observations)
    assert len(env.trajectory) in (0, 1)
