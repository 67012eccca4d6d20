"""Mapping history you can use: every saved version of the rules with who, when and from where,
the difference between two versions, and a restore that is a save like any other."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.admin.models import LogEntry
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from pimsync import mapping, mapping_history, retention
from pimsync.models import Job, MappingConfig, MappingRule, MappingVersion
from tests.conftest import STANDARD_MAPPING
from tests.test_dashboard import MAPPING, as_user, mapping_form

pytestmark = pytest.mark.django_db

VERSIONS = "/admin/pimsync/mappingconfig/versions/"
IMPORT = "/admin/pimsync/mappingconfig/import/"


def version_url(version: MappingVersion, **query) -> str:
    url = reverse("admin:pimsync_mappingconfig_version", args=[version.pk])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def restore_url(version: MappingVersion) -> str:
    return reverse("admin:pimsync_mappingconfig_restore", args=[version.pk])


def upload(document: dict, name: str = "rules.json") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, json.dumps(document).encode(), content_type="application/json")


@pytest.fixture
def editor(client, people):
    return as_user(client, people["Mapping editors"])


class TestEverySaveIsKept:
    def test_a_save_in_the_form_keeps_the_rules_with_who_and_from_where(self, editor, people, world):
        assert editor.post(MAPPING, mapping_form(**{"rules-1-transform": "lower"})).status_code == 302
        version = MappingVersion.objects.get()
        assert (version.source, version.saved_by) == ("form", people["Mapping editors"])
        assert version.document == mapping.export_config()
        assert version.document["rules"][1]["transform"] == "lower"

    def test_a_form_saved_without_a_change_keeps_no_version(self, editor, world):
        assert editor.post(MAPPING, mapping_form()).status_code == 302
        assert not MappingVersion.objects.exists()

    def test_an_import_on_the_page_is_kept_with_the_files_name(self, editor, people, world):
        document = {**STANDARD_MAPPING, "rules": STANDARD_MAPPING["rules"][:2]}
        assert editor.post(IMPORT, {"file": upload(document, "two.json")}).status_code == 302
        version = MappingVersion.objects.get()
        assert (version.source, version.saved_by, version.note) == (
            "import",
            people["Mapping editors"],
            "from two.json",
        )
        assert version.rule_count == 2

    def test_an_import_with_problems_keeps_no_version(self, editor, world):
        bad = {**STANDARD_MAPPING, "rules": [{"pim_field": "a[", "metadata_path": "dc:title"}]}
        response = editor.post(IMPORT, {"file": upload(bad)})
        assert response.status_code == 200 and "Nothing was changed" in response.content.decode()
        assert not MappingVersion.objects.exists()

    def test_the_import_mappings_command_is_kept_as_a_version(self, world, tmp_path):
        path = tmp_path / "rules.json"
        path.write_text(json.dumps({**STANDARD_MAPPING, "on_unmapped": "keep"}))
        call_command("import_mappings", str(path), stdout=io.StringIO())
        version = MappingVersion.objects.get()
        assert (version.source, version.saved_by, version.note) == ("command", None, f"from {path}")
        assert version.document["on_unmapped"] == "keep"
        (tmp_path / "bad.json").write_text('{"rules": "none"}')
        with pytest.raises(CommandError):
            call_command("import_mappings", str(tmp_path / "bad.json"), stdout=io.StringIO())
        assert MappingVersion.objects.count() == 1

    def test_versions_outlive_the_retention_that_purges_the_admin_log(self, editor, world):
        editor.post(MAPPING, mapping_form(**{"rules-1-transform": "lower"}))
        assert LogEntry.objects.exists()
        later = timezone.now() + timedelta(days=400)
        with mock.patch("django.utils.timezone.now", return_value=later):
            retention.purge()
        assert not LogEntry.objects.exists()
        assert MappingVersion.objects.count() == 1


class TestComparingVersions:
    def test_the_versions_page_lists_who_saved_what_from_where(self, editor, world):
        editor.post(MAPPING, mapping_form(**{"rules-1-transform": "lower"}))
        editor.post(IMPORT, {"file": upload(STANDARD_MAPPING, "standard.json")})
        page = editor.get(VERSIONS).content.decode()
        assert "import on the mapping page: from standard.json" in page
        assert page.count("<td>mapping</td>") == 2  # the editor's user name, in the By column
        assert page.count('href="/admin/pimsync/mappingconfig/versions/') == 2

    def test_a_version_shows_what_its_save_changed_rule_by_rule(self, editor, world):
        editor.post(IMPORT, {"file": upload(STANDARD_MAPPING)})
        changed = {
            **STANDARD_MAPPING,
            "on_unmapped": "keep",
            "rules": [
                STANDARD_MAPPING["rules"][0],
                {**STANDARD_MAPPING["rules"][1], "transform": "lower", "path_glob": "/content/dam/b2b/*"},
                STANDARD_MAPPING["rules"][3],
                {"pim_field": "price.amount", "metadata_path": "pim:listprice"},
            ],
        }
        editor.post(IMPORT, {"file": upload(changed)})
        page = editor.get(version_url(MappingVersion.objects.latest())).content.decode()
        assert "values no rule yields any more" in page and "&quot;remove&quot; → &quot;keep&quot;" in page
        assert "rule 2: SupplierName → wknd-suppliername" in page
        assert "transform: &quot;upper&quot; → &quot;lower&quot;" in page
        assert "path_glob: (none) → &quot;/content/dam/b2b/*&quot;" in page
        assert "rule 3: values.name[?locale==&#x27;en_US&#x27;].data | [0] → dc:title" in page  # removed
        assert "rule 4: price.amount → pim:listprice" in page  # added

    def test_compare_gives_added_removed_and_changed_rules_and_nothing_for_equal_ones(self):
        old = {"product_key": {"from": "asset_name"}, "rules": STANDARD_MAPPING["rules"]}
        assert mapping_history.compare(old, old) == []
        new = {**old, "rules": [*old["rules"][1:], {"attribute": "price", "currency": "EUR", "metadata_path": "p"}]}
        kinds = [(d.kind, d.what) for d in mapping_history.compare(old, new)]
        assert kinds == [
            ("removed", "rule 1: SKUID → wknd-skuid (its number before)"),
            ("added", "rule 4: price (EUR) → p"),
        ]

    def test_any_two_versions_can_be_compared_and_with_the_mapping_as_it_is_now(self, editor, world):
        editor.post(IMPORT, {"file": upload(STANDARD_MAPPING)})
        first = MappingVersion.objects.get()
        editor.post(MAPPING, mapping_form(**{"rules-0-metadata_path": "pim:sku"}))
        page = editor.get(version_url(first, **{"with": "current"})).content.decode()
        assert "From the mapping as it is now to version" in page
        assert "rule 1: SKUID → wknd-skuid" in page
        latest = MappingVersion.objects.latest()
        page = editor.get(version_url(latest, **{"with": first.pk})).content.decode()
        assert f"From version {first.pk} to version {latest.pk}" in page and "rule 1: SKUID → pim:sku" in page


class TestRestoring:
    def test_a_restore_is_a_save_a_new_version_and_starts_the_mapping_check(self, editor, people, world):
        editor.post(IMPORT, {"file": upload(STANDARD_MAPPING)})
        first = MappingVersion.objects.get()
        editor.post(MAPPING, mapping_form(**{"rules-1-transform": "lower", "on_unmapped": "keep"}))
        generation = MappingConfig.load().generation
        checks = Job.objects.filter(kind=Job.Kind.AFFECTED).count()

        response = editor.post(restore_url(first))
        assert response.status_code == 302 and response["Location"] == MAPPING
        assert mapping.export_config() == first.document
        assert MappingRule.objects.get(metadata_path="wknd-suppliername").transform == "upper"
        assert MappingConfig.load().on_unmapped == "remove"
        restored = MappingVersion.objects.latest()
        assert (restored.source, restored.saved_by) == ("restore", people["Mapping editors"])
        assert restored.note == f"restored version {first.pk}"
        assert MappingConfig.load().generation == generation + 1
        assert Job.objects.filter(kind=Job.Kind.AFFECTED).count() == checks + 1
        assert "Restored mapping version" in editor.get(MAPPING).content.decode()

    def test_a_version_the_checks_no_longer_accept_is_refused_and_nothing_changes(self, editor, world):
        editor.post(IMPORT, {"file": upload(STANDARD_MAPPING)})
        bad = MappingVersion.objects.create(
            source="form", document={"rules": [{"pim_field": "x", "metadata_path": "jcr:created"}]}
        )
        before = mapping.export_config()
        response = editor.post(restore_url(bad), follow=True)
        assert "was not restored, nothing changed" in response.content.decode()
        assert "owned by AEM" in response.content.decode()
        assert mapping.export_config() == before
        assert MappingVersion.objects.count() == 2

    def test_a_viewer_may_compare_but_not_restore(self, client, people, world):
        version = mapping_history.record(MappingVersion.Source.COMMAND)
        viewer = as_user(client, people["Viewers"])
        page = viewer.get(version_url(version)).content.decode()
        assert "restore-button" not in page
        assert viewer.post(restore_url(version)).status_code == 403
        assert viewer.get(restore_url(version)).status_code in (403, 405)
