"""``GET /tasks`` filtering and paging, as the FN's admin task list does it.

Filters are ``<field>__<op>=<value>`` with op one of eq, ne, lt, gt, lte,
gte, compared the way the FN's database compares them: a field that is empty
(NULL) matches no comparison at all, not even ``ne``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from datetime import datetime, timezone

from standins.fn_state import FNTask
from standins.fn_submission import refusal

DEFAULT_PER_PAGE = 25

OPERATORS: dict[str, Callable[[object, object], bool]] = {
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt,
    "gt": operator.gt, "lte": operator.le, "gte": operator.ge,
}

#: The stored fields a filter may name, and the type their values compare as.
FIELDS: dict[str, type] = {
    "id": int, "name": str, "docker_image": str, "description": str,
    "task_controller": bool, "requested_by": str, "dataset_id": int,
    "created_at": datetime, "updated_at": datetime, "repository": str,
}


def _coerce(field: str, raw: str) -> object:
    kind = FIELDS[field]
    try:
        if kind is int:
            return int(raw)
        if kind is bool:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1")
        if kind is datetime:
            moment = datetime.fromisoformat(raw)
            return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    except ValueError:
        raise refusal(400, f"Invalid value {raw} for {field}") from None
    return raw


def _filters(query: Mapping[str, str]) -> list[tuple[str, Callable, object]]:
    filters = []
    for key, raw in query.items():
        if key in ("page", "per_page"):
            continue
        field, _, op = key.partition("__")
        op = op or "eq"
        if field not in FIELDS:
            raise refusal(400, f"Unknown field {field}")
        if op not in OPERATORS:
            raise refusal(400, f"Unknown operator {op}")
        filters.append((field, OPERATORS[op], _coerce(field, raw)))
    return filters


def _paging(query: Mapping[str, str]) -> tuple[int, int]:
    try:
        page = int(query.get("page", 1))
        per_page = int(query.get("per_page", DEFAULT_PER_PAGE))
    except ValueError:
        raise refusal(400, "page and per_page must be integers") from None
    if page < 1 or per_page < 1:
        raise refusal(400, "page and per_page must be positive")
    return page, per_page


def list_tasks(tasks: list[FNTask], query: Mapping[str, str], now: datetime) -> dict:
    """One page of the tasks matching every filter in ``query``, oldest first."""
    filters = _filters(query)
    page, per_page = _paging(query)

    def matches(task: FNTask) -> bool:
        for field, compare, wanted in filters:
            stored = getattr(task, field)
            if stored is None or not compare(stored, wanted):
                return False
        return True

    found = sorted((task for task in tasks if matches(task)), key=lambda task: task.id)
    start = (page - 1) * per_page
    return {
        "items": [task.view(now) for task in found[start:start + per_page]],
        "page": page,
        "per_page": per_page,
        "total": len(found),
        "pages": math.ceil(len(found) / per_page),
    }
