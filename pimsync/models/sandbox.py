"""Rows only sandbox mode uses: the AEM stand-in's assets, its journal, and demo products changed
by `simulate_pim_change`."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class SandboxAsset(models.Model):
    """An asset in the built-in AEM stand-in (sandbox mode only: see `pimsync.sandbox`)."""

    asset_id = models.CharField(max_length=255, primary_key=True)
    path = models.CharField(max_length=1024)
    name = models.CharField(max_length=255)
    mime_type = models.CharField(max_length=255, default="image/png")
    metadata = models.JSONField(default=dict, blank=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.path

    @property
    def etag(self) -> str:
        return f'"{self.asset_id.rsplit(":", 1)[-1][:8]}-{self.version}"'


class DemoProduct(models.Model):
    """A demo PIM product as `simulate_pim_change` left it (sandbox only): overrides the shipped
    catalog (`pimsync/demo/catalog.json`), so that every process, the worker included, serves the
    changed product."""

    key = models.CharField(max_length=255, primary_key=True)
    data = models.JSONField()
    changed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"demo product {self.key}"


class SandboxJournalEntry(models.Model):
    """An event in the built-in I/O Events journal (sandbox mode only); its id is its position."""

    event = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"journal entry {self.pk}"
