"""``parlmt envs list`` and ``parlmt envs show``."""

from parlmt.cli import main


def test_list_summarises_sources(capsys):
    assert main(["envs", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["source", "tasks", "train", "dev", "test"]
    assert "bfcl:base 200 120 20 60" in [" ".join(line.split()) for line in out]
    assert any(line.startswith("py:todo") for line in out)


def test_list_filters_by_category_and_split(capsys):
    assert main(["envs", "list", "--category", "miss_func", "--split", "test"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 60 and all(line.startswith("bfcl:miss_func:") and " test " in line for line in lines)
    assert main(["envs", "list", "--split", "dev"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 80


def test_show_a_bfcl_task(capsys):
    assert main(["envs", "show", "bfcl:base:0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("bfcl:base:0  (multi_turn_base_0)")
    for expected in (
        "Initial state",
        "GorillaFileSystem:",
        "[0] user: Move 'final_report.pdf'",
        "truth: cd(folder='document'); mkdir(dir_name='temp')",
        "Tools at turn 0",
        "mv(source: str, destination: str) -- Move a file",
    ):
        assert expected in out


def test_show_miss_func_and_python_tasks(capsys):
    assert main(["envs", "show", "multi_turn_miss_func_0"]) == 0
    out = capsys.readouterr().out
    assert "[reveals: sort]" in out and "truth: sort(file_name='final_report.pdf')" in out
    assert "Tools revealed later (1)" in out
    assert main(["envs", "show", "py:todo:4"]) == 0
    assert "(none: the request cannot be completed)" in capsys.readouterr().out


def test_show_a_bad_id(capsys):
    assert main(["envs", "show", "bfcl:base:999"]) == 2
    assert "has 200 tasks" in capsys.readouterr().err
