"""The `parlmt` entry point: logging set-up shared by every command."""

import logging

from parlmt.cli import main


def test_dspy_truncation_warnings_show_once_per_run(caplog, capsys):
    assert main(["envs", "list"]) == 0
    logger = logging.getLogger("dspy.clients.lm")
    with caplog.at_level(logging.WARNING, logger="dspy.clients.lm"):
        for _ in range(3):
            logger.warning(f"response truncated ({id(caplog)})")  # a message earlier tests cannot have logged
        logger.warning(f"another message ({id(caplog)})")
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [f"response truncated ({id(caplog)}) (shown once)",
                        f"another message ({id(caplog)}) (shown once)"]
