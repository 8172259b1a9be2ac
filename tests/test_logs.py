"""Log lines carry the Task's fields, in text or JSON, and nothing else of the record."""

from __future__ import annotations

import json
import logging

from taskcore.logs import JSONFormatter, TextFormatter


def record(**extra) -> logging.LogRecord:
    entry = logging.LogRecord("poller.run", logging.INFO, __file__, 1, "status %s", ("Running",),
                              None)
    for key, value in extra.items():
        setattr(entry, key, value)
    return entry


def test_json_lines_hold_message_and_task_fields():
    line = json.loads(JSONFormatter().format(record(namespace="research", task="t1")))
    assert line["message"] == "status Running"
    assert (line["namespace"], line["task"], line["level"]) == ("research", "t1", "info")


def test_text_lines_end_with_fields_and_drop_colour_copies():
    line = TextFormatter().format(record(namespace="research",
                                         color_message="\x1b[1mstatus\x1b[0m"))
    assert line.endswith("namespace=research")
    assert "\x1b" not in line and "color_message" not in line
