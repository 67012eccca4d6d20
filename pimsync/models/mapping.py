"""The mapping configuration: the product-key rule and the rules from PIM fields to AEM properties."""

from __future__ import annotations

import re

import jmespath.exceptions
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, models
from django.utils import timezone

from pimsync import expressions, patterns


class MappingConfig(models.Model):
    """The product-key rule. There is one row, `SINGLETON_PK`; `MappingConfig.load()` returns it."""

    # The one configuration row's primary key: rules point at it and the admin's change page is at
    # /admin/pimsync/mappingconfig/1/change/.
    SINGLETON_PK = 1

    class KeySource(models.TextChoices):
        ASSET_NAME = "asset_name", "asset name"
        ASSET_PATH = "asset_path", "asset path"
        METADATA = "metadata", "metadata property"

    key_from = models.CharField(
        "product key from", max_length=16, choices=KeySource.choices, default=KeySource.ASSET_NAME
    )
    key_metadata_property = models.CharField(
        max_length=255, blank=True, help_text="The metadata property, when the key comes from metadata"
    )
    key_pattern = models.CharField(
        max_length=500,
        blank=True,
        help_text="Regular expression; its named group `key` (or the whole match) is the product "
        "key. Empty: the asset name without its extension.",
    )

    class OnUnmapped(models.TextChoices):
        REMOVE = "remove", "remove them from AEM at the next sync"
        KEEP = "keep", "keep them in AEM"

    # What becomes of a property pimsync wrote that no rule yields any more (a rule deleted,
    # disabled or narrowed): removed, so an asset in step holds exactly what the rules say, or kept.
    on_unmapped = models.CharField(
        "values no rule yields any more",
        max_length=8,
        choices=OnUnmapped.choices,
        default=OnUnmapped.REMOVE,
        help_text="A property pimsync wrote earlier that no rule writes any more (a rule deleted, disabled or "
        "limited to other assets): remove it from the asset at its next sync, or leave it there.",
    )
    updated_at = models.DateTimeField(auto_now=True)
    # Counts saved changes of the rules (`changed()`): an enrichment that read the rules at an
    # older generation knows they changed since, without comparing clocks.
    generation = models.PositiveBigIntegerField(default=0)

    class Meta:
        verbose_name = "mapping rules"
        verbose_name_plural = "mapping rules"

    def __str__(self) -> str:
        return "Mapping rules"

    def clean(self) -> None:
        """The key pattern compiles on RE2 and names its group `key`; a metadata source names a property."""
        errors = {}
        if self.key_pattern:
            problem = patterns.key_pattern_problem(self.key_pattern)
            if problem:
                errors["key_pattern"] = problem
        if self.key_from == self.KeySource.METADATA and not patterns.PROPERTY_NAME.fullmatch(
            self.key_metadata_property or ""
        ):
            errors["key_metadata_property"] = "name the metadata property that holds the product key"
        if self.key_from not in self.KeySource.values:
            errors["key_from"] = "must be asset_name, asset_path or metadata:<property>"
        if self.on_unmapped not in self.OnUnmapped.values:
            errors["on_unmapped"] = f"{str(self.on_unmapped)[:40]!r} is not keep or remove"
        if errors:
            raise ValidationError(errors)

    @classmethod
    def load(cls) -> MappingConfig:
        config, _ = cls.objects.get_or_create(pk=cls.SINGLETON_PK)
        return config

    @classmethod
    def changed(cls) -> None:
        """Count a saved change of the rules (form, import, command): the next generation."""
        cls.load()
        cls.objects.filter(pk=cls.SINGLETON_PK).update(generation=models.F("generation") + 1)

    @classmethod
    def changed_since_condition(cls, generation: int) -> tuple[str, list]:
        """SQL that holds when the rules were changed after they were read at `generation`, and its
        parameters: asked after every enrichment, within the statement that records the asset
        (`Asset.synced`), rather than as a query of its own."""
        quote = connection.ops.quote_name
        table, newer = quote(cls._meta.db_table), f"{quote('generation')} > %s"
        return f"EXISTS (SELECT 1 FROM {table} WHERE {quote('id')} = %s AND {newer})", [cls.SINGLETON_PK, generation]


class MappingRule(models.Model):
    """One PIM field → one AEM metadata property, applied in `position` order."""

    # There is one configuration; the key lets the admin edit rules inline with it.
    config = models.ForeignKey(
        MappingConfig, on_delete=models.CASCADE, default=MappingConfig.SINGLETON_PK, related_name="rules"
    )

    class Transform(models.TextChoices):
        NONE = "none", "none"
        UPPER = "upper", "upper case"
        LOWER = "lower", "lower case"
        STRIP = "strip", "strip whitespace"
        JOIN = "join", "join a list with ', '"
        STRING = "string", "to string"

    position = models.PositiveIntegerField(default=0, db_index=True)
    # A rule reads its value one of two ways: a JMESPath expression over the product JSON, or an
    # Akeneo attribute read as a person reads it (pimsync.pim.akeneo_values); exactly one is set.
    pim_field = models.CharField(
        "PIM field",
        max_length=500,
        blank=True,
        help_text="JMESPath over the PIM product JSON; a plain field name is one",
    )
    attribute = models.CharField(
        "Akeneo attribute", max_length=100, blank=True, help_text="An Akeneo attribute code, e.g. name or color"
    )
    locale = models.CharField(max_length=32, blank=True, help_text="Empty: AKENEO_LOCALE (for localizable attributes)")
    channel = models.CharField(max_length=100, blank=True, help_text="Empty: AKENEO_CHANNEL (for scopable attributes)")
    currency = models.CharField(max_length=3, blank=True, help_text="For prices, e.g. EUR; empty: the first price")
    option_codes = models.BooleanField(
        "option codes", default=False, help_text="Write the codes of select options instead of their labels"
    )
    metadata_path = models.CharField(max_length=255, help_text="AEM metadata property, e.g. dc:title")
    transform = models.CharField(max_length=16, choices=Transform.choices, default=Transform.NONE)
    default = models.JSONField(null=True, blank=True, help_text='Written when the PIM value is empty (JSON, e.g. "")')
    path_glob = models.CharField(
        max_length=500, blank=True, help_text="Only assets whose path matches, e.g. /content/dam/products/*"
    )
    mime_glob = models.CharField(max_length=255, blank=True, help_text="Only matching types, e.g. image/*")
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"{self.source_label} → {self.metadata_path}"

    @property
    def attribute_locale(self) -> str:
        return self.locale or settings.AKENEO_LOCALE

    @property
    def attribute_channel(self) -> str:
        return self.channel or settings.AKENEO_CHANNEL

    @property
    def source_label(self) -> str:
        """Where the value comes from, as the preview shows it: `name (en_US, ecommerce)`."""
        if not self.attribute:
            return self.pim_field
        details = [self.attribute_locale, self.attribute_channel, self.currency, "codes" if self.option_codes else ""]
        return f"{self.attribute} ({', '.join(d for d in details if d)})"

    def clean(self) -> None:
        """One message per bad field: the source, the property (not one AEM owns), the globs."""
        errors = self._source_errors()
        path = self.metadata_path or ""
        if not patterns.PROPERTY_NAME.fullmatch(path):
            shown = repr(path) if len(path) <= 60 else repr(path[:60]) + "…"
            errors["metadata_path"] = f"{shown} is not a metadata property name such as dc:title, pim:sku or wknd-skuid"
        elif path.lstrip("/").startswith(patterns.READ_ONLY_PREFIXES):
            errors["metadata_path"] = f"{path} is owned by AEM and cannot be written"
        if self.transform not in self.Transform.values:
            errors["transform"] = f"{self.transform!r} is not one of {', '.join(sorted(self.Transform.values))}"
        for name in ("path_glob", "mime_glob"):
            try:
                patterns.glob_regex(getattr(self, name) or "")
            except patterns.PatternError as exc:
                errors[name] = f"not a pattern that can be matched: {exc}"
        if errors:
            raise ValidationError(errors)

    # Akeneo codes are letters, digits and underscores (attributes and channels up to 100
    # characters); locales look like en_US or zh_Hans_CN; currencies are ISO 4217 codes.
    _CODE = re.compile(r"[A-Za-z0-9_]{1,100}")
    _LOCALE = re.compile(r"[A-Za-z]{2,3}(?:_[A-Za-z0-9]{2,8}){0,2}")
    _CURRENCY = re.compile(r"[A-Z]{3}")

    def _source_errors(self) -> dict[str, str]:
        """Exactly one of JMESPath and attribute; the attribute's details only with an attribute."""
        if self.pim_field and self.attribute:
            return {"attribute": "a rule reads either a PIM field (JMESPath) or an Akeneo attribute: empty one of them"}
        if self.attribute:
            return self._attribute_errors()
        errors = {}
        if not self.pim_field:
            errors["pim_field"] = "a PIM field (JMESPath expression) or an Akeneo attribute is required"
        else:
            try:
                growth = expressions.growth(self.pim_field)
            except jmespath.exceptions.JMESPathError as exc:
                errors["pim_field"] = f"not a valid JMESPath expression: {str(exc).splitlines()[0]}"
            except RecursionError:
                errors["pim_field"] = "not a valid JMESPath expression: it is nested too deeply"
            else:
                if growth > expressions.MAX_GROWTH:
                    errors["pim_field"] = (
                        f"this expression can repeat the product's data more than {expressions.MAX_GROWTH} "
                        "times: multiselects in a row, such as [@,@]|[@,@], multiply it"
                    )
        for name in ("locale", "channel", "currency"):
            if getattr(self, name):
                errors[name] = f"a {name} is only read by Akeneo attribute rules: empty it or choose an attribute"
        if self.option_codes:
            errors["option_codes"] = "option codes are only read by Akeneo attribute rules"
        return errors

    def _attribute_errors(self) -> dict[str, str]:
        checks = (
            ("attribute", self._CODE, "an Akeneo attribute code (letters, digits and _, at most 100)"),
            ("locale", self._LOCALE, "a locale code such as en_US"),
            ("channel", self._CODE, "an Akeneo channel code such as ecommerce"),
            ("currency", self._CURRENCY, "a currency code such as EUR"),
        )
        errors = {}
        for name, pattern, what in checks:
            value = getattr(self, name)
            if value and not pattern.fullmatch(value):
                shown = repr(value) if len(value) <= 60 else repr(value[:60]) + "…"
                errors[name] = f"{shown} is not {what}"
        return errors


class MappingVersion(models.Model):
    """One saved version of the whole mapping, as the export writes it: who saved it, when, and
    from where. Every save (the form, an import, `import_mappings`, a restore) adds one; none is
    ever purged, so any earlier version can be compared and restored."""

    class Source(models.TextChoices):
        FORM = "form", "mapping page"
        IMPORT = "import", "import on the mapping page"
        COMMAND = "command", "import_mappings command"
        RESTORE = "restore", "restore of an earlier version"

    saved_at = models.DateTimeField(default=timezone.now)
    saved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    source = models.CharField(max_length=16, choices=Source.choices)
    note = models.CharField(max_length=255, blank=True, help_text="e.g. the imported file's name")
    # The mapping document (`mapping.export_config()`), which `mapping.import_config` reads back.
    document = models.JSONField()

    class Meta:
        ordering = ["-id"]
        get_latest_by = "id"

    def __str__(self) -> str:
        return f"version {self.pk}"

    def clean(self) -> None:
        """The document is a mapping document (an object with its rules in a list)."""
        if not isinstance(self.document, dict) or not isinstance(self.document.get("rules"), list):
            raise ValidationError({"document": "not a mapping document (an object with a list of rules)"})

    @property
    def rule_count(self) -> int:
        return len(self.document.get("rules", [])) if isinstance(self.document, dict) else 0
