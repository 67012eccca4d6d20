"""Akeneo product values as a person reads them, for attribute rules (`MappingRule.attribute`).

Akeneo answers `values: {attribute: [{"locale", "scope", "data", "linked_data"?}]}`, where `locale`
and `scope` are null unless the attribute is localizable or scopable, and `data` depends on the
attribute type (https://api.akeneo.com/concepts/products.html#focus-on-the-product-values). The
type is not in the answer, so it is told from the shape of `data`:

- text, textarea, date, number, identifier: the string or number as it is;
- simple select: the option's label in the rule's locale from `linked_data` (asked for with
  `with_attribute_options=true`), else its code;
- multi select, asset and reference entity collections: a list (of labels where Akeneo sent
  them), which AEM stores as a multi-value property; the rule's transform `join` makes one string;
- price collection: `"49.90 EUR"` in the rule's currency, or the first price;
- metric: `"1.2 KILOGRAM"`, trailing zeros of the amount dropped;
- boolean: true or false.

The PIM's answer is not ours: any other shape gives no value and a note saying why, never an
exception, and only the first `MAX_ITEMS` entries of any list are looked at.
"""

from __future__ import annotations

import re

MAX_ITEMS = 1000
_DECIMAL = re.compile(r"-?[0-9]{1,40}(?:\.[0-9]{1,40})?")


def read(
    product: object, attribute: str, *, locale: str, channel: str, currency: str = "", option_codes: bool = False
) -> tuple[object, str]:
    """The value of `attribute` for `locale` and `channel`, and a note (empty when all went well)."""
    values = product.get("values") if isinstance(product, dict) else None
    if not isinstance(values, dict):
        return None, "the product has no Akeneo values"
    entries = values.get(attribute)
    if entries is None:
        return None, f"the product has no value for {attribute}"
    if not isinstance(entries, list):
        return None, f"values.{attribute} is not a list of values: ignored"
    entry, note = _pick(entries[:MAX_ITEMS], attribute, locale, channel)
    if entry is None:
        return None, note
    return _readable(entry, attribute, locale, currency, option_codes)


def _pick(entries: list, attribute: str, locale: str, channel: str) -> tuple[dict | None, str]:
    """The entry for this locale and channel; a null locale or scope fits every one."""
    best, best_score = None, -1
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        entry_locale, entry_scope = entry.get("locale"), entry.get("scope")
        if entry_locale not in (None, locale) or entry_scope not in (None, channel):
            continue
        score = (entry_locale is not None) + (entry_scope is not None)
        if score > best_score:
            best, best_score = entry, score
    if best is not None:
        return best, ""
    held = sorted({_where(entry) for entry in entries if isinstance(entry, dict)})
    shown = ", ".join(held[:5]) + (", …" if len(held) > 5 else "")
    return None, f"no value of {attribute} for {locale}, {channel}" + (f" (the product has {shown})" if held else "")


def _where(entry: dict) -> str:
    return "/".join(str(part)[:40] for part in (entry.get("locale"), entry.get("scope")) if part is not None) or "-"


def _readable(entry: dict, attribute: str, locale: str, currency: str, option_codes: bool) -> tuple[object, str]:
    data = entry.get("data")
    if data is None or isinstance(data, (bool, int, float)):
        return data, ""
    if data == [] or data == {}:
        return None, ""
    if isinstance(data, str):
        return (data, "") if option_codes else _option_label(data, entry.get("linked_data"), locale)
    if isinstance(data, list) and all(isinstance(item, dict) for item in data[:MAX_ITEMS]):
        return _price(data[:MAX_ITEMS], attribute, currency)
    if isinstance(data, list):
        return _options(data[:MAX_ITEMS], entry.get("linked_data"), attribute, locale, option_codes)
    if isinstance(data, dict) and "unit" in data:
        return _metric(data, attribute)
    return None, f"values.{attribute} holds {_kind(data)}, which an attribute rule cannot read (a JMESPath rule can)"


def _label(code: str, linked: object, locale: str) -> str:
    """The option's label in `locale` from one `linked_data` object, else its code."""
    labels = linked.get("labels") if isinstance(linked, dict) else None
    label = labels.get(locale) if isinstance(labels, dict) else None
    return label if isinstance(label, str) and label else code


def _option_label(code: str, linked: object, locale: str) -> tuple[str, str]:
    # A simple select's `linked_data` is one {"attribute", "code", "labels"} object.
    if isinstance(linked, dict) and linked.get("code") == code:
        return _label(code, linked, locale), ""
    return code, ""


def _options(items: list, linked: object, attribute: str, locale: str, codes: bool) -> tuple[list | None, str]:
    # A multi select's `linked_data` is keyed by option code.
    if not all(isinstance(item, str) for item in items):
        return None, f"values.{attribute} holds a list of {_kind(items)}: neither options nor prices"
    if codes or not isinstance(linked, dict):
        return list(items), ""
    return [_label(code, linked.get(code), locale) for code in items], ""


def _price(prices: list[dict], attribute: str, currency: str) -> tuple[str | None, str]:
    chosen = next((p for p in prices if p.get("currency") == currency), None) if currency else next(iter(prices), None)
    if chosen is None:
        held = ", ".join(sorted({str(p.get("currency"))[:8] for p in prices})[:10])
        return None, f"no {currency} price in {attribute}" + (f" (the product has {held})" if held else "")
    amount, code = chosen.get("amount"), chosen.get("currency")
    if amount is None:
        return None, ""
    if not _is_amount(amount) or not isinstance(code, str) or not code:
        return None, f"values.{attribute} holds a price that is not an amount and a currency"
    return f"{amount} {code}", ""


def _metric(metric: dict, attribute: str) -> tuple[str | None, str]:
    amount, unit = metric.get("amount"), metric.get("unit")
    if amount is None:
        return None, ""
    if not _is_amount(amount) or not isinstance(unit, str) or not unit:
        return None, f"values.{attribute} holds a measure that is not an amount and a unit"
    return f"{trim_zeros(str(amount))} {unit}", ""


def _is_amount(amount: object) -> bool:
    if isinstance(amount, bool):
        return False
    return isinstance(amount, (int, float)) or (isinstance(amount, str) and bool(_DECIMAL.fullmatch(amount)))


def trim_zeros(amount: str) -> str:
    """`1.2000` → `1.2`, `10.0000` → `10`, `100` stays `100` (only zeros after the point go)."""
    if "." not in amount or not _DECIMAL.fullmatch(amount):
        return amount
    return amount.rstrip("0").rstrip(".")


def _kind(data: object) -> str:
    """What `data` is, in words; for a list, what its items are (one level down, never deeper:
    the PIM's answer may nest lists as deep as it likes)."""
    if isinstance(data, list):
        kinds = sorted({_one_kind(item) for item in data[:MAX_ITEMS]})
        return " and ".join(kinds[:3]) or "nothing"
    return _one_kind(data)


def _one_kind(data: object) -> str:
    return {dict: "an object", list: "a list", str: "text"}.get(type(data), type(data).__name__)
