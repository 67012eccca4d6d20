"""The mapping page: product-key rule with its ordered rules inline, a preview that never writes,
JSON import/export, the field picker, and every saved version of the rules (`mapping_versions`).

Every saved change (the form, an import, a restore) is kept as a version and starts a mapping check
(`mapping_history.saved`); the page shows how far the check is and then offers to re-sync the known
assets the change affects."""

from __future__ import annotations

import json

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Max
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from dashboard import field_picker, job_pages, mapping_versions
from dashboard.preview import preview
from dashboard.sites import RESYNC_PERMISSION
from pimsync import mapping, mapping_history, resync
from pimsync.middleware import upload_limit
from pimsync.models import Event, Job, MappingConfig, MappingRule, MappingVersion
from pimsync.outbound import http
from pimsync.pim import connectors

# The re-sync the mapping page offers, recorded in the job history as its why.
OFFER_WHY = "mapping changed"


class DefaultField(forms.JSONField):
    """The rule's default as one line of JSON; empty means "no default" (not the JSON null)."""

    def prepare_value(self, value):
        return "" if value is None else super().prepare_value(value)


# The rule form: position and the switch first, then every field import and export carry, in order.
RULE_FORM_FIELDS = ("position", "enabled", *(name for name in mapping.RULE_FIELDS if name != "enabled"))


class MappingRuleForm(forms.ModelForm):
    # Empty for a new rule: it goes last (`RuleFormSet.clean`); the box shows the number it will get.
    position = forms.IntegerField(
        required=False, min_value=0, widget=forms.NumberInput(attrs={"class": "rule-position"}), label="#"
    )
    default = DefaultField(
        required=False,
        widget=forms.TextInput(attrs={"size": 16, "placeholder": "no default"}),
        help_text='JSON written when the PIM value is empty, e.g. "" or "n/a"',
    )

    class Meta:
        model = MappingRule
        fields = RULE_FORM_FIELDS
        widgets = {
            "pim_field": forms.TextInput(attrs={"placeholder": "JMESPath, e.g. SKUID"}),
            "attribute": forms.TextInput(attrs={"placeholder": "attribute code"}),
            "locale": forms.TextInput(attrs={"placeholder": settings.AKENEO_LOCALE}),
            "channel": forms.TextInput(attrs={"placeholder": settings.AKENEO_CHANNEL}),
            "currency": forms.TextInput(attrs={"placeholder": "first", "maxlength": 3}),
            "path_glob": forms.TextInput(attrs={"placeholder": "path glob"}),
            "mime_glob": forms.TextInput(attrs={"placeholder": "type glob"}),
        }


class RuleFormSet(forms.BaseInlineFormSet):
    def clean(self):
        """A rule without a number goes last: after every numbered rule, new ones in the table's order
        (a new rule at 0 would be overridden by every older rule for its property)."""
        super().clean()
        kept = [f for f in self.forms if f.has_changed() or f.instance.pk]
        kept = [f for f in kept if getattr(f, "cleaned_data", None) and not self._should_delete_form(f)]
        numbered = [f.cleaned_data["position"] for f in kept if f.cleaned_data.get("position") is not None]
        following = max(numbered, default=0) + 1
        for form in kept:
            if form.cleaned_data.get("position") is None:
                form.instance.position = form.cleaned_data["position"] = following
                following += 1


class MappingRuleInline(admin.TabularInline):
    model = MappingRule
    form = MappingRuleForm
    formset = RuleFormSet
    fields = RULE_FORM_FIELDS
    # One "Source" column (JMESPath or attribute with its details) and one "Only for" column
    # (the globs) keep the table within a 1,280-pixel window.
    template = "admin/pimsync/mappingconfig/rules_inline.html"
    ordering = ("position", "id")
    extra = 1
    verbose_name = "mapping rule"
    verbose_name_plural = "Mapping rules (applied in position order; a later rule for the same property wins)"

    def get_formset(self, request, obj=None, **kwargs):
        """With a PIM that lists its attributes (Akeneo), the attribute is chosen from that list."""
        formset = super().get_formset(request, obj, **kwargs)
        # The number a new rule gets (the script counts on for each row added).
        following = (MappingRule.objects.aggregate(last=Max("position"))["last"] or 0) + 1
        formset.form.base_fields["position"].widget.attrs["placeholder"] = str(following)
        # Read by change_view; the preview only validates (a select or a text input: same field).
        attributes, _ = getattr(request, "_pimsync_attributes", (None, ""))
        if attributes is not None and "attribute" in formset.form.base_fields:
            formset.form.base_fields["attribute"].widget = forms.Select(
                choices=_attribute_choices(attributes), attrs={"class": "attribute-select"}
            )
        return formset


def pim_attributes(request) -> tuple[list[dict] | None, str]:
    """The PIM's attributes (None: its connector has no list) and a notice when they could not be
    read; asked once per request, so a PIM that is down costs one timeout, not one per form."""
    if not hasattr(request, "_pimsync_attributes"):
        try:
            found, notice = connectors.connector().attributes(), ""
        except (http.HttpError, connectors.ConfigurationError) as exc:
            found = None
            notice = f"The PIM's attribute list could not be read ({exc}): type attribute codes instead."
        if found is not None and not isinstance(found, list):
            found, notice = None, "The PIM's attribute list is not a list: type attribute codes instead."
        request._pimsync_attributes = ([a for a in found if _usable(a)] if found is not None else None, notice)
    return request._pimsync_attributes


def _usable(attribute: object) -> bool:
    return isinstance(attribute, dict) and isinstance(attribute.get("code"), str) and attribute["code"] != ""


def _label(attribute: dict) -> str:
    labels = attribute.get("labels")
    label = labels.get(settings.AKENEO_LOCALE) if isinstance(labels, dict) else None
    code = attribute["code"]
    return f"{label} ({code})" if isinstance(label, str) and label and label != code else code


def _attribute_choices(attributes: list[dict]) -> list[tuple[str, str]]:
    """The select's options: every attribute of the PIM, then those the rules use that it no
    longer has (so saving the form does not drop them silently)."""
    known = {a["code"] for a in attributes}
    used = MappingRule.objects.exclude(attribute="").values_list("attribute", flat=True).distinct()
    missing = sorted(code for code in used if code not in known)
    return [
        ("", "— (a JMESPath rule)"),
        *sorted(((a["code"], _label(a)) for a in attributes), key=lambda c: c[1].lower()),
        *((code, f"{code} (not in the PIM)") for code in missing),
    ]


def attribute_details(attributes: list[dict] | None) -> dict[str, dict]:
    """What the rule form's script needs per attribute: which of locale, channel, currency and
    option codes apply."""
    return {
        a["code"]: {
            "type": str(a.get("type", "")),
            "localizable": a.get("localizable") is True,
            "scopable": a.get("scopable") is True,
        }
        for a in attributes or []
    }


class ImportForm(forms.Form):
    file = forms.FileField(help_text="A JSON file in the export format. It replaces every rule at once.")


class MappingConfigForm(forms.ModelForm):
    class Meta:
        model = MappingConfig
        fields = ("key_from", "key_metadata_property", "key_pattern")
        # Read-only pages (a Viewer's) show these too, where the model's help text would show
        # its backticks as they are.
        help_texts = {
            "key_pattern": "Regular expression in RE2 syntax (no lookaround or backreferences); its named group "
            "(?P<key>…), or the whole match, is the product key. Empty: the asset name without its extension."
        }


class MappingConfigAdmin(admin.ModelAdmin):
    form = MappingConfigForm
    inlines = [MappingRuleInline]
    fields = ("key_from", "key_metadata_property", "key_pattern", "on_unmapped")
    change_form_template = "admin/pimsync/mappingconfig/change_form.html"

    class Media:
        css = {"all": ["dashboard/dashboard.css"]}
        js = ["dashboard/mapping.js"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        """There is one configuration: the list goes straight to it."""
        config = MappingConfig.load()
        return HttpResponseRedirect(reverse("admin:pimsync_mappingconfig_change", args=[config.pk]))

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        mapping.forget()
        if form.has_changed() or any(formset.has_changed() for formset in formsets):
            mapping_history.saved(MappingVersion.Source.FORM, request.user)

    def response_change(self, request, obj):
        # Django's "The mapping rules “Mapping rules” was changed successfully." names the one
        # configuration as if there were several, in the singular.
        request._pimsync_rules_saved = True
        return super().response_change(request, obj)

    def message_user(self, request, message, level=messages.INFO, *args, **kwargs):
        if getattr(request, "_pimsync_rules_saved", False) and level == messages.SUCCESS:
            request._pimsync_rules_saved = False
            message = "The mapping rules were changed successfully."
        super().message_user(request, message, level, *args, **kwargs)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if not self.has_view_or_change_permission(request):  # before the PIM is asked anything
            raise PermissionDenied
        attributes, notice = pim_attributes(request)
        extra = {
            "attribute_notice": notice,
            "attribute_details": attribute_details(attributes),
            **mapping_check(request.user),
        }
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("preview/", wrap(self.preview_view), name="pimsync_mappingconfig_preview"),
            path("pick/", wrap(self.pick_view), name="pimsync_mappingconfig_pick"),
            path("export/", wrap(self.export_view), name="pimsync_mappingconfig_export"),
            path("import/", wrap(self.import_view), name="pimsync_mappingconfig_import"),
            path("check/", wrap(self.check_view), name="pimsync_mappingconfig_check"),
            path("versions/", wrap(self.versions_view), name="pimsync_mappingconfig_versions"),
            path("versions/<int:pk>/", wrap(self.version_view), name="pimsync_mappingconfig_version"),
            path(
                "versions/<int:pk>/restore/",
                wrap(require_POST(self.restore_view)),
                name="pimsync_mappingconfig_restore",
            ),
            # GET asks first (count, time estimate, why), POST re-syncs.
            path("resync-affected/", wrap(self.resync_affected), name="pimsync_mappingconfig_resync"),
            *super().get_urls(),
        ]

    def preview_view(self, request):
        """Evaluate the rules as edited in the form (unsaved) against a product or a stored event."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        source = request.POST if request.method == "POST" else None
        config, rules, form_errors = self._edited(request, source)
        params = source if source is not None else request.GET
        key, event_ref = params.get("preview_key", "").strip(), params.get("preview_event", "").strip()
        result = None
        if not form_errors and (key or event_ref):
            saved = list(MappingRule.objects.order_by("position", "id"))
            result = preview(config, rules if rules is not None else saved, key=key, event_ref=event_ref)
        context = {
            **self.admin_site.each_context(request),
            "title": "Preview mapping rules",
            "opts": self.opts,
            "result": result,
            "form_errors": form_errors,
            # A Viewer's form cannot be edited: what it posts are the saved rules.
            "unsaved": rules is not None and self.has_change_permission(request, config),
            "posted": [(k, v) for k in (source or {}) for v in source.getlist(k) if k != "csrfmiddlewaretoken"],
            "preview_key": key,
            "preview_event": event_ref,
            "config": config,
            "can_change": self.has_change_permission(request, config),
            "recent_events": Event.objects.exclude(product_key="")
            .order_by("-received_at", "-id")
            .only("id", "asset_name", "product_key")[:5],
        }
        return TemplateResponse(request, "admin/pimsync/mappingconfig/preview.html", context)

    def _edited(self, request, source) -> tuple[MappingConfig, list[MappingRule] | None, list[str]]:
        """The configuration and rules as posted from the change form (validated by the same forms,
        unsaved) and their errors; rules are None when nothing was posted or it does not validate."""
        config = MappingConfig.load()
        if source is None or "rules-TOTAL_FORMS" not in source:
            return config, None, []
        form = self.get_form(request, config, change=True)(source, instance=config)
        valid = form.is_valid()
        formsets, _ = self._create_formsets(request, form.instance, change=True)
        if not all([valid, *[formset.is_valid() for formset in formsets]]):
            return config, None, _form_errors(form, formsets)
        rules = [
            f.instance
            for formset in formsets
            for f in formset.forms
            if f not in formset.deleted_forms and (f.instance.pk or f.has_changed())
        ]
        rules.sort(key=lambda r: (r.position, r.pk or 0))
        return form.instance, rules, []

    def pick_view(self, request):
        """A sample product's fields as a tree for the picker (JSON); for those who may edit the rules."""
        if not self.has_change_permission(request, MappingConfig.load()):
            raise PermissionDenied
        status, body = field_picker.answer(request.GET.get("key", ""))
        return JsonResponse(body, status=status, json_dumps_params={"ensure_ascii": False})

    def export_view(self, request):
        """The whole configuration as a JSON download, in the format the import reads."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        response = HttpResponse(
            json.dumps(mapping.export_config(), indent=2, ensure_ascii=False) + "\n", content_type="application/json"
        )
        response["Content-Disposition"] = f'attachment; filename="pimsync-mappings-{timezone.now():%Y%m%d-%H%M}.json"'
        return response

    @upload_limit(mapping.MAX_FILE_BYTES)
    def import_view(self, request):
        """Replace every rule from an uploaded JSON file, or say what is wrong with it and change nothing."""
        config = MappingConfig.load()
        if not (
            self.has_change_permission(request, config)
            and request.user.has_perm("pimsync.add_mappingrule")
            and request.user.has_perm("pimsync.delete_mappingrule")
        ):
            raise PermissionDenied
        problems = []
        form = ImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            with transaction.atomic():  # the rules and their version, together
                problems, count = _import(upload)
                if not problems:
                    mapping_history.saved(MappingVersion.Source.IMPORT, request.user, f"from {upload.name}")
            if not problems:
                self._log_import(request, config, f"Imported {count} mapping rule(s) from {upload.name}")
                return HttpResponseRedirect(reverse("admin:pimsync_mappingconfig_change", args=[config.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Import mapping rules",
            "opts": self.opts,
            "form": form,
            "problems": problems,
            "config": config,
        }
        return TemplateResponse(request, "admin/pimsync/mappingconfig/import.html", context)

    def versions_view(self, request):
        return mapping_versions.versions_view(self, request)

    def version_view(self, request, pk):
        return mapping_versions.version_view(self, request, pk)

    def restore_view(self, request, pk):
        return mapping_versions.restore_view(self, request, pk)

    def check_view(self, request):
        """The mapping check's box alone: the mapping page reloads it while the check runs."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        return render(request, "admin/pimsync/mappingconfig/mapping_check.html", mapping_check(request.user))

    def resync_affected(self, request):
        """ "Re-sync the N affected assets": asks first (GET: how many, how long at the re-sync pace,
        why), then re-syncs the assets the mapping changes left stale (POST, CSRF-protected)."""
        if not request.user.has_perm(RESYNC_PERMISSION):
            raise PermissionDenied
        if request.method != "POST":
            count = resync.affected_count()
            return TemplateResponse(
                request,
                "admin/pimsync/asset/resync_confirm.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Re-sync the affected assets?",
                    "count": count,
                    "what": resync.describe({"mapping_affected": True}),
                    "estimate": job_pages.duration(resync.estimate_seconds(count)) if count else "",
                    "rate": settings.PIMSYNC_RESYNC_RATE,
                    "fields": {},
                    "why": OFFER_WHY,
                    "form_action": reverse("admin:pimsync_mappingconfig_resync"),
                    "back": reverse("admin:pimsync_mappingconfig_changelist"),
                    "opts": self.opts,
                },
            )
        job = resync.start(
            request.user, {"mapping_affected": True}, why=request.POST.get("why", "").strip() or OFFER_WHY
        )
        self.message_user(request, f"Re-syncing {job.total} affected asset(s): this page shows how far it is.")
        return HttpResponseRedirect(reverse("admin:pimsync_event_job", args=[job.pk]))

    def _log_import(self, request, config: MappingConfig, message: str) -> None:
        # The import shows in the configuration's History, like an edit in the form.
        LogEntry.objects.log_actions(
            user_id=request.user.pk, queryset=[config], action_flag=CHANGE, change_message=message, single_object=True
        )
        self.message_user(request, f"{message}.", messages.SUCCESS)


def mapping_check(user) -> dict:
    """What the mapping page says about the latest mapping check: still running (how far), or
    how many known assets are affected, with the re-sync of them started since, if any."""
    check = Job.objects.filter(kind=Job.Kind.AFFECTED).order_by("-created_at", "-id").first()
    if check is None:
        return {}
    context = {"check": check, "can_resync": user.has_perm(RESYNC_PERMISSION)}
    if check.status == Job.State.FINISHED:
        context["affected"] = resync.affected_count()
        later = Job.objects.filter(kind=Job.Kind.RESYNC, created_at__gte=check.created_at).order_by("-created_at")
        context["resync_job"] = next((j for j in later[:20] if j.assets == {"mapping_affected": True}), None)
    return context


def _form_errors(form, formsets) -> list[str]:
    """The change form's errors as lines for the preview page: the configuration's, then each rule's."""
    return [str(e) for e in form.errors.values()] + [
        f"rule {i + 1}: {' '.join(str(m) for m in errs.values())}"
        for formset in formsets
        for i, errs in enumerate(formset.errors)
        if errs
    ]


def _import(upload) -> tuple[list[str], int]:
    """Import the uploaded file through `mapping.import_config`: its problems (none: imported) and rule count."""
    try:
        # Never more than the cap is read, whatever the upload's size says.
        _, rules = mapping.import_config(mapping.read_file(upload.read(mapping.MAX_FILE_BYTES + 1), upload.name))
    except ValidationError as exc:
        return exc.messages, 0
    return [], len(rules)
