"""Mapping rules: from (asset, PIM product, current metadata) to the changes to write.

`plan()` is pure: the worker and the dashboard's preview both call it, so what the preview shows
is what the worker would send.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import jmespath.exceptions
from django.core.exceptions import ValidationError
from django.db import transaction

from pimsync import expressions, inbound, patterns
from pimsync.models import AssetRef, Event, MappingConfig, MappingRule
from pimsync.pim import akeneo_values

# Every field of a rule that import and export carry, in the order an exported rule lists them.
RULE_FIELDS = (
    "pim_field",
    "attribute",
    "locale",
    "channel",
    "currency",
    "option_codes",
    "metadata_path",
    "transform",
    "default",
    "path_glob",
    "mime_glob",
    "enabled",
)
PRODUCT_KEY_MAX_LENGTH = Event._meta.get_field("product_key").max_length


class MappingError(Exception):
    """The configuration cannot produce a product key or a value (the event fails with this)."""


# --- evaluation -----------------------------------------------------------------------------


@dataclass
class RuleResult:
    rule_id: int | None
    source: str  # the JMESPath expression, or the attribute with its locale and channel
    metadata_path: str
    applies: bool
    value: object = None
    note: str = ""
    position: int | None = None  # the rule's number as the mapping table shows it
    yields: bool = False  # whether the rule gives the property a value (before a later rule's)


@dataclass
class Plan:
    """What the rules yield for one asset, and the JSON Patch that would make AEM match."""

    product_key: str
    results: list[RuleResult] = field(default_factory=list)
    # [{"path": property name, "old", "new", "exists": whether AEM's metadata had the property}];
    # a property to take off the asset has "op": "remove" (and "new": None).
    changes: list[dict] = field(default_factory=list)
    # Properties pimsync wrote that no rule yields any more (removed, or already gone from AEM):
    # they leave the asset's record of what pimsync wrote. Empty when the mapping keeps them.
    unmapped: list[str] = field(default_factory=list)


def product_key(asset: AssetRef, config: MappingConfig, metadata: dict | None = None) -> str:
    """The product key of an asset, or MappingError saying why there is none."""
    if config.key_from == MappingConfig.KeySource.ASSET_PATH:
        source = asset.path
    elif config.key_from == MappingConfig.KeySource.METADATA:
        value = (metadata or {}).get(config.key_metadata_property)
        source = value if isinstance(value, str) else ""
        if not source:
            raise MappingError(f"the asset has no {config.key_metadata_property} metadata to take the product key from")
    else:
        source = asset.name or PurePosixPath(asset.path).name
    if not config.key_pattern:
        key = PurePosixPath(source).stem if config.key_from == MappingConfig.KeySource.ASSET_NAME else source
    else:
        try:
            key = patterns.search_key(config.key_pattern, source)
        except patterns.PatternError as exc:
            raise MappingError(f"the product key pattern {config.key_pattern!r} cannot be used: {exc}") from None
        if key is None:
            raise MappingError(f"the product key pattern {config.key_pattern!r} does not match {_excerpt(source)}")
    if not key:
        raise MappingError(f"no product key in {_excerpt(source)}")
    check_product_key(key)
    return key


def check_product_key(key: str) -> None:
    """MappingError unless `key` can be one path segment of a PIM URL (nor `.`, `..` nor empty)."""
    if key in (".", "..") or not key.strip():
        raise MappingError(
            f"{key!r} cannot be a product key: a key is one path segment of the PIM's URL, and "
            "an empty key, '.' or '..' would name another resource"
        )
    if len(key) > PRODUCT_KEY_MAX_LENGTH:
        raise MappingError(
            f"the product key {_excerpt(key)} is {len(key)} characters long; at most "
            f"{PRODUCT_KEY_MAX_LENGTH} are allowed (check the product key rule)"
        )


def _excerpt(text: str, limit: int = 120) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "…"


def _empty(value: object) -> bool:
    return value is None or value == "" or value == [] or value == {}


def transform(name: str, value: object) -> object:
    """`value` after the rule's transform; a value the transform does not fit passes unchanged."""
    if value is None:
        return None
    if name == MappingRule.Transform.UPPER:
        return value.upper() if isinstance(value, str) else value
    if name == MappingRule.Transform.LOWER:
        return value.lower() if isinstance(value, str) else value
    if name == MappingRule.Transform.STRIP:
        return value.strip() if isinstance(value, str) else value
    if name == MappingRule.Transform.JOIN:
        return ", ".join(str(item) for item in value) if isinstance(value, list) else value
    if name == MappingRule.Transform.STRING:
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return value


def applies(rule: MappingRule, asset: AssetRef) -> tuple[bool, str]:
    """Whether `rule` applies to `asset`, and if not, why (shown in the preview)."""
    if not rule.enabled:
        return False, "disabled"
    if rule.path_glob and not patterns.glob_matches(rule.path_glob, asset.path):
        return False, f"path does not match {rule.path_glob}"
    if rule.mime_glob and not patterns.glob_matches(rule.mime_glob, asset.mime_type):
        return False, f"type {asset.mime_type or '(unknown)'} does not match {rule.mime_glob}"
    return True, ""


def plan(
    asset: AssetRef,
    key: str,
    product: dict,
    metadata: dict,
    rules: list[MappingRule],
    *,
    last_written: dict | None = None,
    on_unmapped: str = MappingConfig.OnUnmapped.REMOVE,
) -> Plan:
    """The value every rule yields and the changes against `metadata` (nothing equal is written).

    `last_written` names what pimsync wrote to this asset before (`Asset.last_written`): with
    `on_unmapped` "remove", a property among them that no rule yields now is removed from AEM."""
    result = Plan(product_key=key)
    wanted: dict[str, object] = {}
    winners: dict[str, RuleResult] = {}
    measured = None  # the product weighed once, when the first JMESPath rule that builds values needs it
    for rule in rules:
        ok, note = applies(rule, asset)
        if not ok:
            result.results.append(_result(rule, False, note=note))
            continue
        if rule.pim_field and not rule.attribute and measured is None and not expressions.is_field_path(rule.pim_field):
            measured = expressions.Measured(product)
        value, note = _read(rule, product, measured)
        value = transform(rule.transform, value)
        if _empty(value):
            if rule.default is None:
                note = _joined(note, "no PIM value and no default: not written")
                result.results.append(_result(rule, True, note=note))
                continue
            value, note = rule.default, _joined(note, "PIM value empty: default used")
        result.results.append(_result(rule, True, value=value, note=note, yields=True))
        # `dc:title` and `/dc:title` name the same property; a later rule for it wins.
        name = rule.metadata_path.lstrip("/")
        wanted[name] = value
        winners[name] = result.results[-1]
    _say_overridden(result.results, winners)
    for name, value in wanted.items():
        old = metadata.get(name)
        if old != value:
            result.changes.append({"path": name, "old": old, "new": value, "exists": name in metadata})
    if on_unmapped == MappingConfig.OnUnmapped.REMOVE:
        _remove_unmapped(result, wanted, metadata, last_written or {})
    return result


def _result(rule: MappingRule, applies_: bool, **found) -> RuleResult:
    return RuleResult(rule.pk, rule.source_label, rule.metadata_path, applies_, position=rule.position, **found)


def _say_overridden(results: list[RuleResult], winners: dict[str, RuleResult]) -> None:
    """Note on every rule whose value a later rule for the same property replaces which rule wins,
    so a value the preview shows and the patch does not is explained."""
    for found in results:
        winner = winners.get(found.metadata_path.lstrip("/"))
        if found.yields and winner is not None and winner is not found:
            number = winner.position if winner.position is not None else "below"
            found.note = _joined(found.note, f"overridden by rule {number} (a later rule for this property wins)")


def _remove_unmapped(result: Plan, wanted: dict, metadata: dict, last_written: dict) -> None:
    """Remove from AEM every property pimsync wrote that no rule yields now; one AEM no longer
    holds needs no operation (a `remove` of a missing property fails the whole PATCH)."""
    for name in sorted({str(path).lstrip("/") for path in last_written} - set(wanted)):
        result.unmapped.append(name)
        if name in metadata:
            result.changes.append({"path": name, "old": metadata[name], "new": None, "exists": True, "op": "remove"})


def _read(rule: MappingRule, product: dict, measured: expressions.Measured | None = None) -> tuple[object, str]:
    """The rule's value before its transform, and a note on why there is none (the preview shows it)."""
    if rule.attribute:
        return akeneo_values.read(
            product,
            rule.attribute,
            locale=rule.attribute_locale,
            channel=rule.attribute_channel,
            currency=rule.currency,
            option_codes=rule.option_codes,
        )
    try:
        return expressions.search(rule.pim_field, product, measured), ""
    except (jmespath.exceptions.JMESPathError, expressions.TooLarge) as exc:
        raise MappingError(f"rule {_excerpt(rule.pim_field)} → {rule.metadata_path}: {exc}") from None


def _joined(*notes: str) -> str:
    return "; ".join(note for note in notes if note)


# Rule fields that only choose which assets a rule applies to; the fingerprint keeps the outcome.
_SCOPE_FIELDS = ("path_glob", "mime_glob", "enabled")


def fingerprint(
    config: MappingConfig, rules: list[MappingRule], asset: AssetRef, last_written: dict | None = None
) -> str:
    """A hash of the mapping as it applies to `asset`: the product-key rule and, in order, every
    enabled rule that matches the asset. Two equal fingerprints mean the same rules would compute
    the same values from the same product, so a mapping change that leaves it equal needs no
    re-sync of this asset.

    With `last_written` (what pimsync wrote to the asset) and a mapping that removes what no rule
    yields, the properties no applicable rule writes any more count too: such an asset needs a
    sync to remove them. After a good sync there are none, so the enrichment leaves it out."""
    matching = [rule for rule in rules if applies(rule, asset)[0]]
    key_rule = [config.key_from, config.key_metadata_property, config.key_pattern]
    document = {"key": key_rule, "rules": [_outcome_fields(rule) for rule in matching]}
    if config.on_unmapped == MappingConfig.OnUnmapped.REMOVE:
        unmapped = unmapped_properties(matching, asset, last_written)
        if unmapped:  # absent otherwise, so fingerprints recorded before this existed stay equal
            document["remove"] = unmapped
    return _digest(document)


def unmapped_properties(rules: list[MappingRule], asset: AssetRef, last_written: dict | None) -> list[str]:
    """The properties in `last_written` (what pimsync wrote to the asset) that no rule applying to
    the asset writes any more, sorted."""
    targets = {rule.metadata_path.lstrip("/") for rule in rules if applies(rule, asset)[0]}
    return sorted({str(name).lstrip("/") for name in last_written or {}} - targets)


# What a fingerprint hashed before attribute rules existed. A JMESPath rule still hashes exactly
# these, so upgrading does not make every asset look changed by the mapping (and re-synced).
_JMESPATH_FIELDS = ("pim_field", "metadata_path", "transform", "default")


def _outcome_fields(rule: MappingRule) -> list:
    """The rule's fields that decide its value: the JMESPath fields, then every other one that is
    set (as [name, value]). An empty locale or channel of an attribute rule counts as the default
    it stands for, so changing AKENEO_LOCALE or AKENEO_CHANNEL changes the fingerprint too."""
    effective = {"locale": rule.attribute_locale, "channel": rule.attribute_channel} if rule.attribute else {}
    fields: list = [_plain(getattr(rule, name)) for name in _JMESPATH_FIELDS]
    for name in RULE_FIELDS:
        value = effective.get(name, getattr(rule, name))
        if name not in _SCOPE_FIELDS + _JMESPATH_FIELDS and value not in ("", False, None):
            fields.append([name, _plain(value)])
    return fields


def data_fingerprint(product: dict) -> str:
    """A hash of the PIM product as read (key order does not matter)."""
    return _digest(product)


def _plain(value: object) -> object:
    return value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else str(value)


def _digest(document: object) -> str:
    text = json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# The worker reads the configuration for every asset; each process keeps it this long, so an
# edit in the dashboard reaches every worker within these seconds (this process: at once).
CONFIG_CACHE_SECONDS = 5.0
_cache: dict = {}


def current() -> tuple[MappingConfig, list[MappingRule]]:
    """The product-key rule and the enabled rules in order, as the worker applies them."""
    config, rules, _generation = current_with_generation()
    return config, rules


def current_with_generation() -> tuple[MappingConfig, list[MappingRule], int]:
    """`current()` and the mapping's generation when it was read (`MappingConfig.generation`, one
    more with every saved change). This process's copy may be CONFIG_CACHE_SECONDS old; a newer
    generation means the rules changed since.

    The generation is read with the product-key rule, before the rules: a change landing in between
    makes the copy look older than it is (an asset is marked stale needlessly), never newer."""
    cached = _cache.get("config")
    if cached and time.monotonic() - cached[0] < CONFIG_CACHE_SECONDS:
        return cached[1], cached[2], cached[3]
    config = MappingConfig.load()
    rules = list(MappingRule.objects.filter(enabled=True).order_by("position", "id"))
    _cache["config"] = (time.monotonic(), config, rules, config.generation)
    return config, rules, config.generation


def forget() -> None:
    """Drop this process's copy after an edit, so the next enrichment reads the new rules."""
    _cache.clear()


# --- import / export ------------------------------------------------------------------------


def export_config() -> dict:
    """The configuration as the JSON document `import_config` reads (the README shows one)."""
    config = MappingConfig.load()
    key_from = config.key_from
    if key_from == MappingConfig.KeySource.METADATA:
        key_from = f"metadata:{config.key_metadata_property}"
    product_key_rule = {"from": key_from}
    if config.key_pattern:
        product_key_rule["pattern"] = config.key_pattern
    rules = [_export_rule(rule) for rule in MappingRule.objects.order_by("position", "id")]
    document = {"product_key": product_key_rule, "rules": rules}
    if config.on_unmapped != MappingConfig.OnUnmapped.REMOVE:  # like a rule's fields: only when not the default
        document["on_unmapped"] = config.on_unmapped
    return document


def _export_rule(rule: MappingRule) -> dict:
    """One rule as exported: `metadata_path` always, every other field only when it is not its default."""
    defaults = {"transform": MappingRule.Transform.NONE, "default": None, "option_codes": False, "enabled": True}
    item = {}
    for name in RULE_FIELDS:
        value = getattr(rule, name)
        if name == "metadata_path" or value != defaults.get(name, ""):
            item[name] = value
    return item


def _messages(error: ValidationError) -> str:
    return "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in error.message_dict.items())


# A mapping file is a few kilobytes (the demo's is 2 KB): a megabyte is far more than any rules
# need, and bounds what an import reads, parses and validates in a web request.
MAX_FILE_BYTES = 1024 * 1024
# A file nests three levels (the document, its rules, a rule) above a rule's default value.
MAX_FILE_DEPTH = 32


def read_file(data: bytes, name: str) -> object:
    """The JSON document of a mapping file (its first MAX_FILE_BYTES + 1 bytes are enough to
    tell), or ValidationError saying why it cannot be imported; `import_config` takes the rest."""
    if len(data) > MAX_FILE_BYTES:
        raise ValidationError(f"{name} is larger than 1 MB; a mapping file is at most {MAX_FILE_BYTES:,} bytes")
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{name} is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{name} is not valid JSON: {exc}") from None
    except RecursionError:  # json's parser gives up near a thousand levels
        raise ValidationError(f"{name} is nested more than {MAX_FILE_DEPTH} levels deep") from None
    problem = inbound.document_problem(document, MAX_FILE_DEPTH)
    if problem:
        raise ValidationError(f"{name} {problem}")
    return document


def import_config(document: object) -> tuple[MappingConfig, list[MappingRule]]:
    """Replace the whole configuration atomically; ValidationError lists every problem, changes nothing."""
    config, rules = check_config(document)
    with transaction.atomic():
        config.save()
        MappingRule.objects.all().delete()
        MappingRule.objects.bulk_create(rules)
    forget()
    return config, rules


def check_config(document: object) -> tuple[MappingConfig, list[MappingRule]]:
    """The configuration a document describes, validated as an import would and not saved;
    ValidationError lists every problem."""
    if not isinstance(document, dict):
        raise ValidationError("the mapping file must be a JSON object with product_key and rules")
    unknown = set(document) - {"product_key", "rules", "on_unmapped"}
    if unknown:
        raise ValidationError(f"unknown top-level keys: {', '.join(sorted(unknown))}")
    problems: list[str] = []
    config = _config_from(document.get("product_key") or {}, document.get("on_unmapped"), problems)
    rules = _rules_from(document.get("rules", []), problems)
    if problems:
        raise ValidationError(problems)
    return config, rules


def _config_from(key_rule: object, on_unmapped: object, problems: list[str]) -> MappingConfig:
    """The configuration row set from the document's `product_key` and `on_unmapped` (absent: remove),
    checked by `full_clean()`."""
    if not isinstance(key_rule, dict):
        raise ValidationError('product_key must be an object such as {"from": "asset_name"}')
    source = str(key_rule.get("from", "asset_name"))
    config = MappingConfig.load()
    config.key_from, config.key_metadata_property = source, ""
    if source.startswith("metadata:"):
        config.key_from, config.key_metadata_property = MappingConfig.KeySource.METADATA, source[len("metadata:") :]
    config.key_pattern = str(key_rule.get("pattern", "") or "")
    config.on_unmapped = MappingConfig.OnUnmapped.REMOVE if on_unmapped is None else on_unmapped
    try:
        config.full_clean()
    except ValidationError as exc:
        unmapped = exc.error_dict.pop("on_unmapped", None)
        if unmapped:
            problems.append(f"on_unmapped: {' '.join(m for e in unmapped for m in e.messages)}")
        if exc.error_dict:
            problems.append(f"product_key: {_messages(exc)}")
    return config


def _rules_from(items: object, problems: list[str]) -> list[MappingRule]:
    """Unsaved rules from the document's `rules`, each checked by `full_clean()` as a form would."""
    if not isinstance(items, list):
        raise ValidationError("rules must be a list")
    rules = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(f"rules[{index}]: must be an object")
            continue
        extra = set(item) - set(RULE_FIELDS)
        if extra:
            problems.append(f"rules[{index}]: unknown keys {', '.join(sorted(extra))}")
        if not isinstance(item.get("option_codes", False), bool):
            problems.append(f"rules[{index}]: option_codes must be true or false")
        rule = _rule_from(index, item)
        try:
            # The configuration row is ours to set; every other field is checked as a form would.
            rule.full_clean(exclude=["config"])
        except ValidationError as exc:
            label = str(item.get("metadata_path", "?"))
            label = label if len(label) <= 60 else label[:60] + "…"
            problems.append(f"rules[{index}] ({label}): {_messages(exc)}")
        rules.append(rule)
    return rules


def _rule_from(index: int, item: dict) -> MappingRule:
    return MappingRule(
        config_id=MappingConfig.SINGLETON_PK,
        position=index + 1,  # the number the mapping table shows, counted from 1
        pim_field=str(item.get("pim_field", "") or ""),
        attribute=str(item.get("attribute", "") or ""),
        locale=str(item.get("locale", "") or ""),
        channel=str(item.get("channel", "") or ""),
        currency=str(item.get("currency", "") or ""),
        option_codes=item.get("option_codes") is True,
        metadata_path=str(item.get("metadata_path", "")),
        transform=str(item.get("transform", "none")),
        default=item.get("default"),
        path_glob=str(item.get("path_glob", "") or ""),
        mime_glob=str(item.get("mime_glob", "") or ""),
        enabled=bool(item.get("enabled", True)),
    )
