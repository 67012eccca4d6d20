"""The mapping page's field picker: a sample product as a tree whose every value carries the rule
source that reaches it, so a business user clicks a value instead of typing JMESPath.

Each node's `path` is a JMESPath expression (https://jmespath.org/specification.html) that gives
back exactly that value from the product; under `values.<attribute>` of an Akeneo product a node
also carries `rule` (attribute, locale, channel) for an attribute rule. The tree is bounded
(`MAX_NODES`, `MAX_DEPTH`, shown text cut at `MAX_TEXT`): the product is the PIM's answer, not ours.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from itertools import islice

from pimsync import mapping
from pimsync.outbound import http
from pimsync.pim import connectors

MAX_NODES = 2000
MAX_DEPTH = 12
MAX_TEXT = 200
MAX_KEY = 100  # longer keys are shown cut and cannot be picked
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Only such values are written into a filter as a raw string literal; any other item gets an index.
_SAFE_LITERAL = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_QUALIFIERS = ("locale", "scope")
_CODE = re.compile(r"[A-Za-z0-9_]{1,100}")


def field(name: str) -> str:
    """`name` as a JMESPath identifier: bare when it is one, otherwise quoted (`"dc:title"`)."""
    return name if _IDENTIFIER.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def item_selector(items: list, index: int, counts: Counter | None = None) -> tuple[str, bool]:
    """How to reach `items[index]`: a filter on its locale/scope when it has them and is the only
    item they select (Akeneo's value lists), else the index; and whether it is a filter (a projection).

    Only a filter that selects one item is used: a projection drops nulls, so with two matches the
    expression could give the other item's value. `counts` (`qualifier_counts(items)`, counted once
    per list) says how many items each filter selects."""
    item = items[index]
    keys = [key for key in _QUALIFIERS if isinstance(item, dict) and key in item]
    if not keys or not all(_literal(item[key]) for key in keys):
        return f"[{index}]", False
    counts = qualifier_counts(items) if counts is None else counts
    if counts[tuple((key, item[key]) for key in keys)] != 1:
        return f"[{index}]", False
    return "[?" + " && ".join(f"{key}=={_literal(item[key])}" for key in keys) + "]", True


def qualifier_counts(items: list) -> Counter:
    """How many items each filter on locale, scope or both would select, in one pass over the list
    (only text and null can be a filter's literal, so other values are not counted)."""
    counts: Counter = Counter()
    for other in items:
        if not isinstance(other, dict):
            continue
        pairs = [(key, other[key]) for key in _QUALIFIERS if key in other and _countable(other[key])]
        counts.update({(pair,) for pair in pairs})
        if len(pairs) == 2:
            counts[tuple(pairs)] += 1
    return counts


def _countable(value: object) -> bool:
    return value is None or isinstance(value, str)


def _literal(value: object) -> str:
    if value is None:
        return "`null`"
    if isinstance(value, str) and _SAFE_LITERAL.fullmatch(value):
        return f"'{value}'"
    return ""


def expression(steps: list[str], projections: int) -> str:
    """The steps joined into one expression; each filter made a projection, so `| [0]` ends it once per filter."""
    text = ""
    for step in steps:
        text += step if step.startswith("[") or not text else "." + step
    return text + " | [0]" * projections


def tree(product: dict, *, akeneo: bool = False) -> list[dict]:
    """The product's fields as nested nodes: {"name", "path", "value"?, "children"?, "rule"?}."""
    budget = [MAX_NODES]
    return _children(product, [], 0, budget, akeneo, None)


def _children(value: object, steps: list[str], projections: int, budget: list[int], akeneo: bool, rule) -> list[dict]:
    shown = budget[0] + 1  # no more entries than the budget can show (and one for the note)
    if isinstance(value, dict):
        entries = [(str(key)[:MAX_KEY], field(str(key)), False, child) for key, child in islice(value.items(), shown)]
    else:
        counts = qualifier_counts(value)
        entries = [
            (f"[{i}]{_qualified(child)}", *item_selector(value, i, counts), child)
            for i, child in enumerate(islice(value, shown))
        ]
    nodes = []
    for name, step, is_filter, child in entries:
        if budget[0] <= 0:
            nodes.append({"name": "…", "path": None, "value": "(more fields than the picker shows)"})
            break
        budget[0] -= 1
        child_steps = [*steps, step]
        child_rule = _akeneo_rule(akeneo, steps, name, child) or rule
        nodes.append(_node(name, child, child_steps, projections + is_filter, budget, akeneo, child_rule))
    return nodes


def _qualified(item: object) -> str:
    """` en_US/ecommerce` after an Akeneo value's index, so the tree says which value it is."""
    if not isinstance(item, dict):
        return ""
    parts = [str(item[key])[:40] for key in _QUALIFIERS if isinstance(item.get(key), str)]
    return " " + "/".join(parts) if parts else ""


def _node(name, value, steps, projections, budget, akeneo, rule) -> dict:
    if len(steps[-1]) > MAX_KEY + 2:  # a quoted key has two quotes more
        return {"name": name + "…", "path": None, "value": "(a field name this long cannot be picked)"}
    node = {"name": name, "path": expression(steps, projections)}
    if rule:
        node["rule"] = rule
    if isinstance(value, (dict, list)) and value:
        if len(steps) >= MAX_DEPTH:
            node["value"] = "(nested too deeply to show)"
        else:
            node["children"] = _children(value, steps, projections, budget, akeneo, rule)
    else:
        text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
        node["value"] = text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"
    return node


def _akeneo_rule(akeneo: bool, steps: list[str], name: str, value: object) -> dict | None:
    """Under `values` of an Akeneo product: the attribute rule that reads an attribute (default
    locale and channel) or one of its values (that value's locale and channel)."""
    if not akeneo or not steps or steps[0] != "values":
        return None
    if len(steps) == 1:
        return {"attribute": name, "locale": "", "channel": ""} if _CODE.fullmatch(name) else None
    attribute = steps[1].strip('"')
    if len(steps) != 2 or not isinstance(value, dict) or not _CODE.fullmatch(attribute):
        return None
    locale, scope = value.get("locale"), value.get("scope")
    return {
        "attribute": attribute,
        "locale": locale if isinstance(locale, str) and _SAFE_LITERAL.fullmatch(locale) else "",
        "channel": scope if isinstance(scope, str) and _SAFE_LITERAL.fullmatch(scope) else "",
    }


# --- the JSON answer of the mapping page's picker view ----------------------------------------

MAX_ANSWER_BYTES = 2 * 1024 * 1024


def answer(key: str) -> tuple[int, dict]:
    """The HTTP status and JSON body for "pick a field from product `key`": its tree, or an error
    message a person can act on. The product is read like the worker reads it (same connector,
    same timeouts and size cap)."""
    key = key.strip()
    if not key:
        return 400, {"error": "Type the key of a product to pick its fields from."}
    try:
        mapping.check_product_key(key)
        connector = connectors.connector()
        product = connector.get_product(key)
    except (mapping.MappingError, connectors.ConfigurationError) as exc:
        return 400, {"error": str(exc)}
    except http.HttpError as exc:
        return 502, {"error": f"The PIM could not be read: {exc.message}"}
    if product is None:
        return 404, {"error": f"Product {key!r} is not in the PIM."}
    if not isinstance(product, dict):
        return 502, {"error": "The PIM answered with something that is not a product (a JSON object)."}
    body = {"key": key, "connector": connector.name, "fields": tree(product, akeneo=connector.name == "akeneo")}
    if len(json.dumps(body, ensure_ascii=False)) > MAX_ANSWER_BYTES:
        return 502, {"error": "This product is too large to show in the picker; type the rule's source instead."}
    return 200, body
