"""``{{ ... }}`` placeholders in pod templates: the syntax, the check and the substitution.

Syntax: ``{{ ROOT.PATH }}`` with optional spaces inside the braces, where ROOT.PATH is one of

* ``params.NAME`` — a workflow parameter (its value, else its default),
* ``item`` or ``item.KEY[.KEY...]`` — the current foreach element (only in a step with ``foreach``),
* ``step.name``, ``step.index`` — the step name and its foreach index (0 without foreach),
* ``workflow.name``, ``workflow.namespace``, ``workflow.uid``,
* ``steps.NAME.outputs.result`` — the result (termination message) of an upstream step, and
  ``steps.NAME.outputs.json.KEY[.KEY...]`` — a field of it read as JSON.

A string that is exactly one placeholder is replaced by a list or map value itself, and by the text of a
number or boolean (pod fields filled from templates, such as args and env values, are strings: a foreach
over ``[1, 2]`` gives ``"1"`` and ``"2"``); a placeholder inside a longer string is replaced by its text
(JSON for lists and objects).
There is no escaping: ``{{`` not followed by a placeholder and ``}}`` is left as it is.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from typing import Any

__all__ = [
    "PLACEHOLDER",
    "MissingValue",
    "output_reference_problem",
    "output_values",
    "placeholders",
    "render",
    "unknown_references",
]

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*)\s*\}\}")
_WHOLE = re.compile(r"^\s*\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*)\s*\}\}\s*$")
_ROOTS = {"params", "item", "step", "workflow", "steps"}
_OUTPUT = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.outputs\.(result|json(\.[A-Za-z0-9_-]+)*)$")
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


def output_reference_problem(ref: str, upstream: dict[str, bool]) -> str | None:
    """Why ``steps.NAME.outputs...`` (``ref`` without ``steps.``) cannot be read by a step whose upstream
    steps are ``upstream`` (name -> whether it has outputs, i.e. no foreach); None when it can."""
    match = _OUTPUT.match(ref)
    if match is None:
        return "must be steps.NAME.outputs.result or steps.NAME.outputs.json.KEY"
    name = match.group(1)
    if name not in upstream:
        return f"refers to the outputs of step {name!r}, which is not upstream of this step"
    if not upstream[name]:
        return (
            f"refers to the outputs of step {name!r}, which has foreach (only steps without foreach "
            "have outputs)"
        )
    return None


def unknown_references(
    node: Any,
    *,
    params: set[str],
    has_item: bool,
    path: str = "",
    upstream: dict[str, bool] | None = None,
) -> list[str]:
    """Messages for placeholders that cannot be resolved for a step (pure; used by admission). ``upstream``:
    the step's upstream steps, each with whether it has outputs."""
    problems: list[str] = []
    for where, ref in placeholders(node, path):
        root, _, rest = ref.partition(".")
        if root not in _ROOTS:
            problems.append(
                f"{where}: unknown placeholder {{{{ {ref} }}}} (use params.NAME, item, step.name, "
                "step.index, "
                "workflow.name, workflow.namespace, workflow.uid or steps.NAME.outputs.result)"
            )
        elif root == "steps":
            problem = output_reference_problem(rest, upstream or {})
            if problem:
                problems.append(f"{where}: {{{{ {ref} }}}} {problem}")
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


def output_values(result: str) -> dict[str, Any]:
    """What ``steps.NAME.outputs`` holds for a step whose result is ``result``: ``result`` (the text) and,
    when the text is JSON, ``json`` (its value)."""
    out: dict[str, Any] = {"result": result}
    with contextlib.suppress(ValueError):  # not JSON: only the text
        out["json"] = json.loads(result)
    return out


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
