"""``spec.resources``: CPU and memory for the analytics container.

The FN passes ``limits`` and ``requests`` on to Kubernetes, but fails with a
500 on numbers, so quantities travel as text; and a limit below its request
would only fail when the pod is made, after the FN task exists.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from .spec_fields import json_kind, shown

MAX_QUANTITY_LENGTH = 32
RESOURCE_NAMES = ("cpu", "memory")
RESOURCE_SECTIONS = ("limits", "requests")

#: The part of Kubernetes' quantity grammar the FN reads too: a plain decimal with an
#: optional SI or binary suffix (no sign, no exponent).
_QUANTITY = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]+)?)"
                       r"(?P<suffix>m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_SCALE = {"": Decimal(1), "m": Decimal("0.001"),
          **{suffix: Decimal(1000) ** power for power, suffix in enumerate("kMGTPE", 1)},
          **{suffix + "i": Decimal(1024) ** power for power, suffix in enumerate("KMGTPE", 1)}}


def parse_quantity(text: str) -> Decimal | None:
    """The amount a Kubernetes quantity such as ``500m`` or ``1Gi`` stands for, or None."""
    match = _QUANTITY.match(text) if len(text) <= MAX_QUANTITY_LENGTH else None
    if match is None:
        return None
    return Decimal(match["number"]) * _SCALE[match["suffix"] or ""]


def _quantity(section: str, key: str, value: Any,
              problems: list[str]) -> tuple[str, Decimal] | None:
    """A quantity as the FN wants it (text) and its amount. A bare number, as YAML reads
    ``cpu: 2``, is taken as the quantity it spells."""
    label = f"spec.resources.{section}.{key}"
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        problems.append(f"{label} must be a quantity such as \"500m\" or \"1Gi\", not "
                        f"{json_kind(value)} {shown(value)}")
        return None
    amount = parse_quantity(text)
    if amount is None:
        problems.append(f"{label} {shown(value)} is not a Kubernetes quantity such as 500m, "
                        "2 or 1Gi")
        return None
    return text, amount


def resources_field(spec: dict[str, Any], problems: list[str]) -> dict[str, dict[str, str]]:
    """``limits`` and ``requests`` of cpu and memory, values as text (the FN fails on
    numbers); a limit below its request is refused, as Kubernetes would refuse the pod."""
    raw = spec.get("resources")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append("spec.resources must be an object with limits and/or requests")
        return {}
    for key in raw:
        if key not in RESOURCE_SECTIONS:
            problems.append(f"spec.resources may only hold limits and requests, "
                            f"not {shown(key, 40)}")
    sections: dict[str, dict[str, str]] = {}
    amounts: dict[tuple[str, str], Decimal] = {}
    for section in RESOURCE_SECTIONS:
        values = raw.get(section)
        if values is None:
            continue
        if not isinstance(values, dict):
            problems.append(f"spec.resources.{section} must be a map of cpu and memory")
            continue
        for key, value in values.items():
            if key not in RESOURCE_NAMES:
                problems.append(f"spec.resources.{section} may only name cpu and memory, "
                                f"not {shown(key, 40)}")
                continue
            read = _quantity(section, key, value, problems)
            if read is not None:
                sections.setdefault(section, {})[key] = read[0]
                amounts[section, key] = read[1]
    for key in RESOURCE_NAMES:
        limit, request = amounts.get(("limits", key)), amounts.get(("requests", key))
        if limit is not None and request is not None and limit < request:
            problems.append(f"spec.resources.limits.{key} {sections['limits'][key]} is below "
                            f"its request {sections['requests'][key]}; a limit must be at "
                            "least the request")
    return sections
