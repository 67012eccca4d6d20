"""pimsync's rows, by concern: events and attempts (`events`), known assets (`assets`), the
mapping (`mapping`), background jobs (`jobs`), rows that coordinate processes (`coordination`),
the PIM side's rows (`pim`), metrics and alerts (`monitoring`), the doctor's runs (`doctor`) and
sandbox-only rows (`sandbox`).

Everything is importable from `pimsync.models`, as Django expects of an app's models.
"""

from pimsync.models.assets import Asset, StaleCause, SyncState
from pimsync.models.coordination import AccessToken, Heartbeat, JournalCursor, Pause
from pimsync.models.doctor import DoctorRun
from pimsync.models.events import (
    FINAL,
    OUTCOMES,
    PENDING,
    RETRYABLE,
    Arrival,
    AssetRef,
    Attempt,
    Event,
    EventQuerySet,
    EventType,
    Status,
    aem_asset_url,
)
from pimsync.models.jobs import Job
from pimsync.models.leases import Lock
from pimsync.models.mapping import MappingConfig, MappingRule, MappingVersion
from pimsync.models.monitoring import Alert, MetricsWatermark, MetricTotal, SignatureRefusals
from pimsync.models.pim import PimCursor, PimNotification, ProductLinks, SeenSignature
from pimsync.models.sandbox import DemoProduct, SandboxAsset, SandboxJournalEntry

__all__ = [
    "FINAL",
    "OUTCOMES",
    "PENDING",
    "RETRYABLE",
    "AccessToken",
    "Alert",
    "Arrival",
    "Asset",
    "AssetRef",
    "Attempt",
    "DemoProduct",
    "DoctorRun",
    "Event",
    "EventQuerySet",
    "EventType",
    "Heartbeat",
    "Job",
    "JournalCursor",
    "Lock",
    "MappingConfig",
    "MappingRule",
    "MappingVersion",
    "MetricTotal",
    "MetricsWatermark",
    "Pause",
    "PimCursor",
    "PimNotification",
    "ProductLinks",
    "SandboxAsset",
    "SandboxJournalEntry",
    "SeenSignature",
    "SignatureRefusals",
    "StaleCause",
    "Status",
    "SyncState",
    "aem_asset_url",
]
