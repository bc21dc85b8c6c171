"""Compact tool docs and the train/dev/test splits."""

import json
import re

import pytest

from parlmt.envs import load_tasks, render_tool_docs, split_indices, split_of


@pytest.fixture(scope="module")
def bfcl_tool_sets():
    """Distinct turn-0 tool sets of the BFCL tasks, plus miss_func's revealed tools."""
    sets = {}
    for task in load_tasks("bfcl"):
        sets[tuple(s["name"] for s in task.tools)] = list(task.tools)
        for revealed in task.revealed_tools.values():
            sets[tuple(s["name"] for s in revealed)] = list(revealed)
    return list(sets.values())


def test_compact_docs_keep_every_name_type_flag_and_description(bfcl_tool_sets):
    for schemas in bfcl_tool_sets:
        docs = render_tool_docs(schemas)
        words = set(re.findall(r"\w+", docs))
        for schema in schemas:
            own = schema["description"].partition("Tool description:")[2] or schema["description"]
            assert set(re.findall(r"\w+", own)) <= words, schema["name"]
            params = schema["parameters"]
            line = next(ln for ln in docs.splitlines() if ln.startswith(schema["name"] + "("))
            for name, spec in params["properties"].items():
                assert set(re.findall(r"\w+", spec["description"])) <= words
                if name in params["required"]:
                    assert re.search(rf"\b{name}: \w+(\[\w+\])?(,|\))", line), (schema["name"], name)
                else:
                    assert re.search(rf"\b{name}: [\w\[\]]+ = ", line), (schema["name"], name)
        for blurb in {s["description"].partition("Tool description:")[0].strip() for s in schemas}:
            assert docs.count(blurb) == 1


def test_compact_docs_are_under_a_third_of_the_official_json():
    for task in load_tasks("bfcl"):  # the tool sets prompts start with (the bench counts tokens)
        assert len(render_tool_docs(task.tools)) < len(json.dumps(task.tools, indent=4)) / 3, task.id


def test_brief_docs_are_one_signature_line_per_function_and_shorter(bfcl_tool_sets):
    lengths = []
    for schemas in bfcl_tool_sets:
        full, brief = render_tool_docs(schemas), render_tool_docs(schemas, brief=True)
        lengths.append((len(brief), len(full)))
        def signatures(docs: str) -> list[str]:
            return [line.partition(" -- ")[0] for line in docs.splitlines() if re.match(r"\w+\(", line)]

        assert signatures(brief) == signatures(full) and len(signatures(full)) == len(schemas)
        assert not any(line.startswith(" ") for line in brief.splitlines())
        assert len(brief) <= len(full), [s["name"] for s in schemas]
    assert sum(b for b, _ in lengths) < 0.6 * sum(f for _, f in lengths)


def test_compact_docs_of_plain_schemas():
    schemas = [
        {
            "name": "f",
            "description": "Do f.",
            "parameters": {
                "properties": {
                    "x": {"type": "integer", "description": "An x."},
                    "y": {"type": "array", "items": {"type": "float"}, "description": ""},
                    "z": {"type": "string", "enum": ["a", "b"], "description": "A z."},
                    "cfg": {
                        "type": "dict",
                        "description": "Settings.",
                        "properties": {"k": {"type": "string", "description": "A key."}},
                    },
                },
                "required": ["x", "cfg"],
            },
        },
        {"name": "g", "description": "", "parameters": {"properties": {}, "required": []}},
    ]
    assert render_tool_docs(schemas).splitlines() == [
        "Optional parameters show their default.",
        "f(x: int, [y: list[float]], [z: str], cfg: dict) -- Do f.",
        "  x: An x.",
        "  z: A z. One of: 'a', 'b'.",
        "  cfg: Settings.",
        "    k (str): A key.",
        "g()",
    ]


def test_splits_are_deterministic_disjoint_and_shared_across_categories():
    splits = split_indices(200)
    assert {k: len(v) for k, v in splits.items()} == {"train": 120, "dev": 20, "test": 60}
    assert sorted(i for v in splits.values() for i in v) == list(range(200))
    assert splits["test"][:8] == (0, 2, 5, 8, 12, 16, 17, 19)  # a change here re-deals the test set
    assert splits["dev"][:4] == (7, 14, 24, 37)
    by_category = {}
    for task in load_tasks("bfcl", split="test"):
        by_category.setdefault(task.meta["category"], set()).add(task.meta["index"])
    assert len(by_category) == 4 and all(v == set(splits["test"]) for v in by_category.values())
    assert {k: len(v) for k, v in split_indices(6).items()} == {"train": 4, "dev": 1, "test": 1}
    assert split_of(0, 200) == "test"
    with pytest.raises(IndexError):
        split_of(200, 200)
