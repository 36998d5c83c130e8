"""``{{ ... }}`` placeholders in pod templates: the syntax, the check and the substitution.

Syntax: ``{{ ROOT.PATH }}`` with optional spaces inside the braces, where ROOT.PATH is one of

* ``params.NAME`` — a workflow parameter (its value, else its default),
* ``item`` or ``item.KEY[.KEY...]`` — the current foreach element (only in a step with ``foreach``),
* ``step.name``, ``step.index`` — the step name and its foreach index (0 without foreach),
* ``workflow.name``, ``workflow.namespace``, ``workflow.uid``.

A string that is exactly one placeholder is replaced by a list or map value itself, and by the text of a
number or boolean (pod fields filled from templates, such as args and env values, are strings: a foreach
over ``[1, 2]`` gives ``"1"`` and ``"2"``); a placeholder inside a longer string is replaced by its text
(JSON for lists and objects).
There is no escaping: ``{{`` not followed by a placeholder and ``}}`` is left as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

__all__ = ["PLACEHOLDER", "MissingValue", "placeholders", "render", "unknown_references"]

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*)\s*\}\}")
_WHOLE = re.compile(r"^\s*\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*)\s*\}\}\s*$")
_ROOTS = {"params", "item", "step", "workflow"}
_STEP_KEYS = {"name", "index"}
_WORKFLOW_KEYS = {"name", "namespace", "uid"}


class MissingValue(KeyError):
    """A placeholder refers to something the context does not have."""


def _strings(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, f"{path}[{index}]")


def placeholders(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every (field path, reference) of the placeholders in ``node``."""
    for where, text in _strings(node, path):
        for match in PLACEHOLDER.finditer(text):
            yield where, match.group(1)


def unknown_references(node: Any, *, params: set[str], has_item: bool, path: str = "") -> list[str]:
    """Messages for placeholders that cannot be resolved for a step (pure; used by admission)."""
    problems: list[str] = []
    for where, ref in placeholders(node, path):
        root, _, rest = ref.partition(".")
        if root not in _ROOTS:
            problems.append(
                f"{where}: unknown placeholder {{{{ {ref} }}}} (use params.NAME, item, step.name, "
                "step.index, "
                "workflow.name, workflow.namespace or workflow.uid)"
            )
        elif root == "params" and rest.split(".")[0] not in params:
            problems.append(f"{where}: {{{{ {ref} }}}} refers to undefined parameter {rest.split('.')[0]!r}")
        elif root == "params" and not rest:
            problems.append(f"{where}: {{{{ {ref} }}}} must name a parameter: params.NAME")
        elif root == "item" and not has_item:
            problems.append(f"{where}: {{{{ {ref} }}}} is only available in a step with foreach")
        elif root == "step" and rest not in _STEP_KEYS:
            problems.append(f"{where}: unknown placeholder {{{{ {ref} }}}} (use step.name or step.index)")
        elif root == "workflow" and rest not in _WORKFLOW_KEYS:
            problems.append(
                f"{where}: unknown placeholder {{{{ {ref} }}}} (use workflow.name, workflow.namespace or "
                "workflow.uid)"
            )
    return problems


def _lookup(ref: str, context: dict[str, Any]) -> Any:
    value: Any = context
    for part in ref.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise MissingValue(ref)
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def render(node: Any, context: dict[str, Any]) -> Any:
    """A copy of ``node`` with every placeholder replaced from ``context``.

    ``context`` is ``{"params": {...}, "item": ..., "step": {"name", "index"}, "workflow": {...}}``.
    Raises :class:`MissingValue` for a reference the context lacks.
    """
    if isinstance(node, str):
        whole = _WHOLE.match(node)
        if whole:
            # A list or map fills the field as it is; a number or boolean becomes text, as the string
            # fields of a pod (args, env values) need: {{ item }} over [1, 2] gives "1", "2".
            value = _lookup(whole.group(1), context)
            return value if isinstance(value, (dict, list, str)) else _text(value)
        return PLACEHOLDER.sub(lambda m: _text(_lookup(m.group(1), context)), node)
    if isinstance(node, dict):
        return {key: render(value, context) for key, value in node.items()}
    if isinstance(node, list):
        return [render(value, context) for value in node]
    return node
