"""Every saved version of the mapping: recorded with each save, compared rule by rule, restored.

A save is a save wherever it comes from (the mapping page's form, its import, `import_mappings`, a
restore): `saved()` records the version and starts the mapping check, so no path can skip either.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field

from django.db import transaction

from pimsync import mapping, resync
from pimsync.models import Job, MappingConfig, MappingVersion


def record(source: str, user=None, note: str = "") -> MappingVersion:
    """Store the mapping as it is now (its export document) as a new version."""
    version = MappingVersion(
        source=source,
        saved_by=user if getattr(user, "pk", None) else None,
        note=(note or "")[:255],
        document=mapping.export_config(),
    )
    version.full_clean()
    version.save()
    return version


def saved(source: str, user=None, note: str = "") -> Job:
    """The mapping was just saved from `source`: keep this version and start the mapping check."""
    record(source, user, note)
    return resync.mapping_changed(user)


def restore(version: MappingVersion, user=None) -> Job:
    """Make `version` the mapping again, as an import of its document would (a save: a new version
    and the mapping check). ValidationError, changing nothing, when the rules it holds are no longer
    valid (the checks grew stricter since it was saved)."""
    with transaction.atomic():
        mapping.import_config(version.document)
        return saved(MappingVersion.Source.RESTORE, user, f"restored version {version.pk}")


# --- differences between two versions ------------------------------------------------------------


@dataclass
class Difference:
    """One line of a comparison: a setting or a rule added, removed or changed (with what changed)."""

    kind: str  # "added", "removed", "changed"
    what: str  # "rule 3: SKUID → wknd-skuid", or a setting's name
    details: list[str] = field(default_factory=list)


_RULE_DEFAULTS = {"transform": "none", "default": None, "option_codes": False, "enabled": True}


def _value(rule: dict, name: str) -> object:
    return rule.get(name, _RULE_DEFAULTS.get(name, ""))


def _shown(value: object) -> str:
    return "(none)" if value in ("", None) else json.dumps(value, ensure_ascii=False)


def source_of(rule: dict) -> str:
    """Where a rule of a mapping document reads its value, as the preview shows it."""
    if not rule.get("attribute"):
        return str(rule.get("pim_field", ""))
    details = [str(rule[name]) for name in ("locale", "channel", "currency") if rule.get(name)]
    details += ["codes"] if rule.get("option_codes") else []
    return f"{rule['attribute']}" + (f" ({', '.join(details)})" if details else "")


def rule_line(number: int, rule: dict) -> str:
    """`rule 3: SKUID → wknd-skuid`."""
    return f"rule {number}: {source_of(rule)} → {rule.get('metadata_path', '?')}"


def _settings(document: dict) -> dict[str, object]:
    key = document.get("product_key") or {}
    return {
        "product key from": key.get("from", "asset_name"),
        "product key pattern": key.get("pattern", ""),
        "values no rule yields any more": document.get("on_unmapped", MappingConfig.OnUnmapped.REMOVE),
    }


def compare(old: dict, new: dict) -> list[Difference]:
    """What changed from mapping document `old` to `new`: the settings, then the rules (numbered as
    the mapping table numbers them: from 1, in order), each with the fields that changed."""
    differences = [
        Difference("changed", name, [f"{_shown(before)} → {_shown(after)}"])
        for (name, before), after in zip(_settings(old).items(), _settings(new).values(), strict=True)
        if before != after
    ]
    before, after = old.get("rules") or [], new.get("rules") or []
    # Rules are matched by what they read and write; a rule whose other fields changed is "changed".
    identity = [(source_of(r), r.get("metadata_path")) for r in before]
    matcher = difflib.SequenceMatcher(None, identity, [(source_of(r), r.get("metadata_path")) for r in after])
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            differences += [
                _changed(j + 1, before[i], after[j]) for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
            ]
            continue
        olds, news = list(range(i1, i2)), list(range(j1, j2))
        if tag == "replace":  # same property, another source: one rule changed
            for i, j in zip(range(i1, i2), range(j1, j2), strict=False):
                if before[i].get("metadata_path") == after[j].get("metadata_path"):
                    differences.append(_changed(j + 1, before[i], after[j]))
                    olds.remove(i)
                    news.remove(j)
        differences += [Difference("removed", rule_line(i + 1, before[i]) + " (its number before)") for i in olds]
        differences += [Difference("added", rule_line(j + 1, after[j])) for j in news]
    return [d for d in differences if d.kind != "changed" or d.details]


def _changed(number: int, before: dict, after: dict) -> Difference:
    details = [
        f"{name}: {_shown(_value(before, name))} → {_shown(_value(after, name))}"
        for name in mapping.RULE_FIELDS
        if _value(before, name) != _value(after, name)
    ]
    return Difference("changed", rule_line(number, after), details)
