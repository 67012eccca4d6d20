"""JMESPath rules under a budget: what one evaluated rule may build, and the shapes a saved rule may have.

A JMESPath value can grow exponentially with its expression: `@|[@,@]|[@,@]|…` doubles the
product at every `[@,@]`. Python builds each doubling with references, so evaluating it is quick,
but writing, hashing or comparing the value walks every copy: 500 characters were a 439 MB
page. So an evaluation counts what every step yields, as the JSON it would be written as, and
stops as soon as one value passes MAX_NODES or MAX_BYTES (`TooLarge`). The product itself is
free: it came over HTTP under the client's size cap. Saving a rule also refuses an expression
that can repeat its input more than MAX_GROWTH times (`growth`), so such a rule is refused when
it is written rather than found out at every enrichment.

A leaf module (it imports nothing of ours): the models' validation and the mapping both use it.
"""

from __future__ import annotations

import functools

import jmespath
import jmespath.exceptions
from jmespath.visitor import TreeInterpreter

# What one rule may yield (and any step on the way): far above a metadata value, far below harm.
MAX_NODES = 100_000
MAX_BYTES = 1_000_000
# Everything an evaluation builds in all (strings and containers made by the expression): a
# projection may make many values each under the limits above.
MAX_BUILT_BYTES = 8 * MAX_BYTES
# How many times an expression may repeat its input: a multiselect of a few dozen fields is
# usual; nested multiselects that multiply are not.
MAX_GROWTH = 100


class TooLarge(ValueError):
    """An evaluation that would build more than the budget allows; the message says how much."""


class Measured:
    """A document weighed once, for the evaluations of every rule over it (a plan evaluates all its
    rules over one product: weighing the product again for each rule walked it once per rule)."""

    def __init__(self, document: object) -> None:
        self.document = document
        self.weights = _Budget(document)._measured


def search(expression: str, document: object, measured: Measured | None = None) -> object:
    """`jmespath.search(expression, document)` that raises TooLarge rather than build an oversized
    value (and jmespath's own errors for a bad expression). `measured`: `document` already weighed."""
    path = _field_path(expression)
    if path is not None:
        value = document
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None  # as jmespath's field
        return value
    parsed = jmespath.compile(expression)
    if measured is None or measured.document is not document:
        measured = Measured(document)
    try:
        return _Interpreter(_Budget(document, measured.weights)).visit(parsed.parsed, document)
    except RecursionError:
        raise TooLarge("it yields a value nested too deeply") from None


def is_field_path(expression: str) -> bool:
    """Whether the expression only walks down fields (`SKUID`, `price.amount`): its value is a part
    of the document as it is, free like the document, so `search` reads it without a budget.
    False for a bad expression, which `search` then refuses with jmespath's error."""
    try:
        return _field_path(expression) is not None
    except jmespath.exceptions.JMESPathError:
        return False


@functools.lru_cache(maxsize=1024)
def _field_path(expression: str) -> tuple[str, ...] | None:
    """The keys a field path walks down, or None for any other expression (jmespath's errors for a
    bad one). Most rules are field paths; the interpreter and its budget were two thirds of a
    plan's CPU in py-spy."""
    return _fields(jmespath.compile(expression).parsed)


def _fields(node: dict) -> tuple[str, ...] | None:
    if node["type"] == "field":
        return (node["value"],)
    if node["type"] == "subexpression":
        parts = [_fields(child) for child in node["children"]]
        if all(part is not None for part in parts):
            return tuple(key for part in parts for key in part)
    return None


def growth(expression: str) -> int:
    """An upper bound of how many times the expression's value can repeat its input (jmespath's
    errors for a bad expression)."""
    return _growth(jmespath.compile(expression).parsed)


def _growth(node: dict) -> int:
    kind, children = node["type"], node.get("children", [])
    if kind in ("literal", "comparator", "not_expression"):
        return 0  # a constant from the expression itself, or a boolean
    if kind in ("field", "current", "identity", "index", "slice"):
        return 1  # a part of the value
    factors = [_growth(child) for child in children if isinstance(child, dict)]
    if kind in ("subexpression", "index_expression", "pipe", "projection", "value_projection"):
        result = 1
        for factor in factors:  # each step repeats what the step before it yields
            result *= factor
        return result
    if kind == "filter_projection":  # [left, right, condition]: the condition yields no value
        return factors[0] * factors[1]
    if kind in ("or_expression", "and_expression"):
        return max(factors)
    if kind == "function_expression" and node.get("value") == "map":
        return factors[0] * factors[1]  # the expression, applied to every element
    # Multiselects, functions, flatten, expref, key_val_pair: together at most all their parts.
    return sum(factors)


class _Budget:
    """What the values of one evaluation weigh as JSON (nodes, bytes), each object weighed once.

    A value is measured from its parts' measures, kept by id, so a list holding one object twice
    costs two reads of a number, not two walks of the object; the objects are kept alive with
    their measure so that an id is never reused for another object during the evaluation."""

    def __init__(self, document: object, free: dict[int, tuple[object, int, int]] | None = None) -> None:
        # `free`: the document's own measures, read-only and shared (they cost this budget nothing).
        self._free = free if free is not None else {}
        self._measured: dict[int, tuple[object, int, int]] = {}
        self.built = 0
        if free is None:
            self._measure(document, built=False)
            self._free, self._measured = self._measured, {}

    def check(self, value: object) -> None:
        if id(value) in self._free:
            return
        nodes, size = self._measure(value, built=True)
        if nodes > MAX_NODES or size > MAX_BYTES:
            raise TooLarge(
                f"it yields a value over {MAX_NODES:,} items or {MAX_BYTES // 1000:,} kB "
                "(it repeats the product's data too often)"
            )
        if self.built > MAX_BUILT_BYTES:
            raise TooLarge(f"it builds over {MAX_BUILT_BYTES // 1_000_000} MB of values in all")

    def _measure(self, value: object, *, built: bool) -> tuple[int, int]:
        if isinstance(value, bool) or value is None or isinstance(value, int | float):
            return 1, 8
        known = self._measured.get(id(value)) or self._free.get(id(value))
        if known is not None:
            return known[1], known[2]
        if isinstance(value, str):
            nodes, size = 1, len(value) + 2
            own = len(value)
        elif isinstance(value, dict):
            nodes, size, own = 1, 2, len(value)
            for key, item in value.items():
                item_nodes, item_size = self._measure(item, built=built)
                nodes, size = nodes + item_nodes, size + item_size + len(str(key)) + 4
                if built and (nodes > MAX_NODES or size > MAX_BYTES):
                    break  # over already: the rest need not be read
        elif isinstance(value, list | tuple):
            nodes, size, own = 1, 2, len(value)
            for item in value:
                item_nodes, item_size = self._measure(item, built=built)
                nodes, size = nodes + item_nodes, size + item_size + 1
                if built and (nodes > MAX_NODES or size > MAX_BYTES):
                    break
        else:  # an expression reference (`&field`) passed to a function: no data of its own
            return 1, 8
        if built:
            self.built += own
        self._measured[id(value)] = (value, nodes, size)
        return nodes, size


class _Interpreter(TreeInterpreter):
    """jmespath's own interpreter, with every step's value weighed before the next step uses it."""

    def __init__(self, budget: _Budget) -> None:
        super().__init__()
        self._budget = budget

    def visit(self, node, *args, **kwargs):
        value = super().visit(node, *args, **kwargs)
        self._budget.check(value)
        return value
