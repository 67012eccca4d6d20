"""The mapping page's versions: every saved version of the rules (who, when, from where), the
difference between two of them, rule by rule, and a restore, which is a save like any other (a new
version and the mapping check: `pimsync.mapping_history`)."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse

from pimsync import mapping, mapping_history
from pimsync.models import MappingConfig, MappingVersion

# Versions listed on one page (newest first); every version is kept, older ones are a page on.
PAGE = 100


def may_restore(model_admin, request) -> bool:
    """A restore replaces every rule, as an import does: the same permissions."""
    return (
        model_admin.has_change_permission(request, MappingConfig.load())
        and request.user.has_perm("pimsync.add_mappingrule")
        and request.user.has_perm("pimsync.delete_mappingrule")
    )


def versions_view(model_admin, request):
    """Every saved version, newest first, with a form to compare any two."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    before = request.GET.get("before", "")
    versions = MappingVersion.objects.select_related("saved_by")
    if before.isdigit():
        versions = versions.filter(pk__lt=int(before))
    shown = list(versions[: PAGE + 1])
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Mapping versions",
        "opts": model_admin.opts,
        "config": MappingConfig.load(),
        "versions": shown[:PAGE],
        "older": shown[PAGE - 1].pk if len(shown) > PAGE else None,
    }
    return TemplateResponse(request, "admin/pimsync/mappingconfig/versions.html", context)


def version_view(model_admin, request, pk: int):
    """One version and how it differs from another: by default the one saved before it (what this
    save changed); `?with=current`: the mapping as it is now (what a restore would change)."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    version = get_object_or_404(MappingVersion.objects.select_related("saved_by"), pk=pk)
    other = request.GET.get("with", "")
    if other == "current":
        base, base_label = mapping.export_config(), "the mapping as it is now"
    elif other.isdigit():
        chosen = get_object_or_404(MappingVersion, pk=int(other))
        base, base_label = chosen.document, f"version {chosen.pk}"
    else:
        previous = MappingVersion.objects.filter(pk__lt=version.pk).order_by("-pk").first()
        base = previous.document if previous else {"rules": []}
        base_label = f"version {previous.pk}" if previous else "no rules (the first version kept)"
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Mapping version {version.pk}",
        "opts": model_admin.opts,
        "config": MappingConfig.load(),
        "version": version,
        "base_label": base_label,
        "differences": mapping_history.compare(base, version.document),
        "document": json.dumps(version.document, indent=2, ensure_ascii=False),
        "can_restore": may_restore(model_admin, request),
        "others": MappingVersion.objects.exclude(pk=version.pk).only("pk", "saved_at", "source")[:PAGE],
    }
    return TemplateResponse(request, "admin/pimsync/mappingconfig/version.html", context)


def restore_view(model_admin, request, pk: int):
    """POST: make this version the mapping again; a version whose rules no longer pass the checks
    is refused with the reasons, changing nothing."""
    if not may_restore(model_admin, request):
        raise PermissionDenied
    version = get_object_or_404(MappingVersion, pk=pk)
    config = MappingConfig.load()
    try:
        mapping_history.restore(version, request.user)
    except ValidationError as exc:
        problems = "; ".join(exc.messages)
        model_admin.message_user(
            request, f"Version {version.pk} was not restored, nothing changed: {problems}", messages.ERROR
        )
        return HttpResponseRedirect(reverse("admin:pimsync_mappingconfig_version", args=[version.pk]))
    message = f"Restored mapping version {version.pk}"
    # The restore shows in the configuration's History, like an edit in the form.
    LogEntry.objects.log_actions(
        user_id=request.user.pk, queryset=[config], action_flag=CHANGE, change_message=message, single_object=True
    )
    model_admin.message_user(
        request, f"{message}; the check of which known assets it affects has started.", messages.SUCCESS
    )
    return HttpResponseRedirect(reverse("admin:pimsync_mappingconfig_change", args=[config.pk]))
