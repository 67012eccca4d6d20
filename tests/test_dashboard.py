"""The dashboard's pages and who may do what on them."""

from __future__ import annotations

import io
import json
import statistics

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_q.models import OrmQ

from dashboard import overview
from pimsync.models import Event, MappingRule, Status
from pimsync.stats import percentile
from tests.conftest import product

pytestmark = pytest.mark.django_db

EVENTS = "/admin/pimsync/event/"
MAPPING = "/admin/pimsync/mappingconfig/1/change/"


@pytest.fixture
def history(client, world) -> dict[str, Event]:
    """One succeeded and one failed enrichment, as the worker left them."""
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.adobe.deliver(client, [world.upload(client, 1), world.upload(client, 2)])
    world.drain()
    return {"succeeded": Event.objects.get(status=Status.SUCCEEDED), "failed": Event.objects.get(status=Status.FAILED)}


def as_user(client, user):
    client.force_login(user)
    return client


class TestAccess:
    def test_anonymous_visitors_are_sent_to_the_login(self, client):
        for url in ("/", "/admin/", EVENTS, MAPPING):
            response = client.get(url, follow=True)
            assert response.redirect_chain[-1][0].startswith("/admin/login/")

    def test_users_who_are_not_staff_cannot_log_in(self, client, people):
        people["Viewers"].is_staff = False
        people["Viewers"].save()
        as_user(client, people["Viewers"])
        assert client.get(EVENTS).status_code == 302


class TestOverview:
    def test_it_shows_counts_charts_queue_worker_and_failures(self, client, people, history):
        response = as_user(client, people["Support"]).get("/admin/")
        page = response.content.decode()
        assert response.status_code == 200
        assert 'id="overview"' in page
        assert '<svg class="chart"' in page and "Events finished per hour" in page
        assert 'id="queue-depth">0<' in page
        assert 'id="worker-heartbeat"' in page and "alive" in page  # the drain that handled them
        assert "product &#x27;SKU-100002&#x27; is not in the PIM" in page
        assert reverse("admin:pimsync_event_retry", args=[history["failed"].pk]) in page
        assert "50.0%" in page  # one succeeded, one failed

    def test_a_viewer_sees_no_retry_buttons(self, client, people, history):
        page = as_user(client, people["Viewers"]).get("/admin/").content.decode()
        assert "is not in the PIM" in page
        assert reverse("admin:pimsync_event_retry", args=[history["failed"].pk]) not in page

    def test_it_warns_about_missing_configuration(self, client, people, settings):
        settings.ADOBE_CLIENT_ID = ""
        page = as_user(client, people["Viewers"]).get("/admin/").content.decode()
        assert "ADOBE_CLIENT_ID is not set" in page
        assert "silent" in page and "never seen" in page  # no worker has run here

    def test_a_recent_sweep_shows_the_worker_alive(self, client, people):
        from pimsync import pipeline

        pipeline.sweep()
        page = as_user(client, people["Viewers"]).get("/admin/").content.decode()
        assert "alive" in page


class TestEventList:
    def test_newest_first_with_badges(self, client, people, history):
        page = as_user(client, people["Viewers"]).get(EVENTS).content.decode()
        assert page.index("SKU-100002_front.png") < page.index("SKU-100001_front.png")
        assert 'class="badge badge-failed"' in page and 'class="badge badge-succeeded"' in page

    @pytest.mark.parametrize(
        "term",
        [
            "SKU-100002",
            "SKU-100002_fr",
            "/content/dam/products/SKU-100002",
            "urn:aaid:aem:00000000-0000-4000-8000-000000000002",
            "evt-000002-processing_completed",
        ],
    )
    def test_search_finds_by_name_path_asset_id_event_id_and_key(self, client, people, history, term):
        page = as_user(client, people["Viewers"]).get(EVENTS, {"q": term}).content.decode()
        assert "SKU-100002_front.png" in page
        assert "SKU-100001_front.png" not in page

    def test_filters_by_status_and_error_class(self, client, people, history):
        as_user(client, people["Viewers"])
        page = client.get(EVENTS, {"status__exact": "failed"}).content.decode()
        assert "SKU-100002_front.png" in page and "SKU-100001_front.png" not in page
        page = client.get(EVENTS, {"error": "pim_not_found"}).content.decode()
        assert "SKU-100002_front.png" in page and "SKU-100001_front.png" not in page

    def test_the_list_needs_few_queries_and_no_full_table_count_on_postgresql(self, client, people, history):
        as_user(client, people["Viewers"])
        client.get(EVENTS)  # warm the session and content-type caches
        with CaptureQueriesContext(connection) as queries:
            assert client.get(EVENTS).status_code == 200
        assert len(queries) <= 15
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:  # statistics as autovacuum would keep them at scale
                cursor.execute("UPDATE pg_class SET reltuples = 1000000 WHERE relname = 'pimsync_event'")
            overview.forget_table_statistics()  # as a minute later: a process reads them once a minute
            with CaptureQueriesContext(connection) as queries:
                page = client.get(EVENTS).content.decode()
            counts = [q["sql"] for q in queries if "COUNT(*)" in q["sql"] and "pimsync_event" in q["sql"]]
            assert counts == []
            assert "1000000" in page.replace(",", "").replace(" ", "")

    def test_rows_cannot_be_added_changed_or_deleted(self, client, people, history):
        # Asserts what the server answers, not only that the row stayed: a change form that
        # accepted the POST but found it invalid would leave the row as it was, too.
        as_user(client, people["Support"])
        event = history["failed"]
        assert client.get(EVENTS + "add/").status_code == 403
        assert client.post(EVENTS + "add/", {"status": "succeeded"}).status_code == 403
        assert client.get(f"{EVENTS}{event.pk}/delete/").status_code == 403
        assert client.post(f"{EVENTS}{event.pk}/delete/", {"post": "yes"}).status_code == 403
        response = client.post(f"{EVENTS}{event.pk}/change/", {"status": "succeeded", "reason": "hand-made"})
        assert response.status_code == 403
        event.refresh_from_db()
        assert event.status == Status.FAILED
        assert Event.objects.filter(pk=event.pk).exists()


class TestEventDetail:
    def test_it_shows_asset_attempts_changes_pim_data_and_payload(self, client, people, history):
        event = history["succeeded"]
        page = as_user(client, people["Viewers"]).get(f"{EVENTS}{event.pk}/change/").content.decode()
        assert "/content/dam/products/SKU-100001_front.png" in page
        assert "open in AEM" in page
        assert 'class="old">—' in page and 'class="new">Trail backpack 35L' in page
        assert "PIM data used" in page and "NORDWAND" in page.upper()
        assert "&quot;specversion&quot;: &quot;1.0&quot;" in page
        assert " ms<" in page
        assert 'id="retry-button"' not in page  # viewers cannot retry

    def test_support_sees_the_retry_button(self, client, people, history):
        page = as_user(client, people["Support"]).get(f"{EVENTS}{history['failed'].pk}/change/").content.decode()
        assert 'id="retry-button"' in page


class TestRetry:
    def url(self, event):
        return reverse("admin:pimsync_event_retry", args=[event.pk])

    def test_support_retries_and_the_history_stays(self, client, people, history, world):
        event = history["failed"]
        world.pim.products["SKU-100002"] = product("SKU-100002")
        response = as_user(client, people["Support"]).post(self.url(event))
        assert response.status_code == 302
        event.refresh_from_db()
        assert event.status == Status.RECEIVED
        world.drain()
        event.refresh_from_db()
        assert event.status == Status.SUCCEEDED
        assert [a.outcome for a in event.attempt_set.all()] == ["failed", "succeeded"]

    @pytest.mark.parametrize("role", ["Viewers", "Mapping editors"])
    def test_other_roles_are_refused_and_nothing_changes(self, client, people, history, role):
        event = history["failed"]
        assert as_user(client, people[role]).post(self.url(event)).status_code == 403
        event.refresh_from_db()
        assert event.status == Status.FAILED
        assert not OrmQ.objects.exists()

    def test_the_retry_button_asks_first_and_a_get_changes_nothing(self, client, people, history):
        event = history["failed"]
        page = as_user(client, people["Support"]).get(self.url(event)).content.decode()
        assert "<strong>1</strong> event will be retried" in page
        assert f'action="{self.url(event)}"' in page and "csrfmiddlewaretoken" in page
        event.refresh_from_db()
        assert event.status == Status.FAILED and not OrmQ.objects.exists()

    def test_a_viewer_cannot_even_see_the_retry_confirmation(self, client, people, history):
        assert as_user(client, people["Viewers"]).get(self.url(history["failed"])).status_code == 403

    def test_the_confirmation_says_a_retry_cannot_bring_a_missing_product_and_what_would(self, client, people, history):
        page = as_user(client, people["Support"]).get(self.url(history["failed"])).content.decode()
        assert 'id="retry-cannot-help"' in page
        assert "This event failed for a reason a retry does not change" in page
        assert "The product is not in the PIM" in page and "Create the product in the PIM" in page

    def test_a_retry_that_can_help_gets_no_warning(self, client, people, history):
        Event.objects.filter(pk=history["failed"].pk).update(error_class="aem_503")
        page = as_user(client, people["Support"]).get(self.url(history["failed"])).content.decode()
        assert 'id="retry-cannot-help"' not in page

    def test_retry_needs_the_csrf_token(self, people, history):
        from django.test import Client

        strict = Client(enforce_csrf_checks=True)
        strict.force_login(people["Support"])
        assert strict.post(self.url(history["failed"])).status_code == 403

    def test_the_bulk_action_asks_first_then_retries(self, client, people, history):
        as_user(client, people["Support"])
        selected = [history["failed"].pk, history["succeeded"].pk]
        data = {"action": "retry_selected", "_selected_action": selected}
        confirm = client.post(EVENTS, data)
        assert confirm.status_code == 200
        assert "<strong>2</strong> events will be retried" in confirm.content.decode()
        assert Event.objects.filter(status=Status.RECEIVED).count() == 0
        client.post(EVENTS, {**data, "confirmed": "yes"})
        assert Event.objects.filter(status=Status.RECEIVED).count() == 2

    def test_a_viewer_cannot_use_the_bulk_action(self, client, people, history):
        as_user(client, people["Viewers"])
        client.post(
            EVENTS, {"action": "retry_selected", "_selected_action": [history["failed"].pk], "confirmed": "yes"}
        )
        assert Event.objects.filter(status=Status.RECEIVED).count() == 0

    def test_retry_all_failed_matching_the_filter(self, client, people, history):
        as_user(client, people["Support"])
        url = reverse("admin:pimsync_event_retry_matching")
        page = client.get(url, {"filters": "q=SKU-10000"}).content.decode()
        assert "<strong>1</strong> event will be retried" in page
        assert client.get(url, {"filters": "q=nothing-matches"}).content.decode().count("<strong>0</strong>") == 1
        client.post(url, {"filters": "q=SKU-10000"})
        assert Event.objects.get(status=Status.RECEIVED) == history["failed"]
        assert Event.objects.get(pk=history["succeeded"].pk).status == Status.SUCCEEDED

    def test_a_viewer_cannot_retry_matching(self, client, people, history):
        url = reverse("admin:pimsync_event_retry_matching")
        assert as_user(client, people["Viewers"]).post(url, {"filters": ""}).status_code == 403


def mapping_form(**changes) -> dict:
    """The mapping change form as a browser would submit it, from the stored rules."""
    from pimsync.models import MappingConfig

    config = MappingConfig.load()
    rules = list(MappingRule.objects.order_by("position", "id"))
    data = {
        "key_from": config.key_from,
        "key_metadata_property": config.key_metadata_property,
        "key_pattern": config.key_pattern,
        "on_unmapped": config.on_unmapped,
        "rules-TOTAL_FORMS": str(len(rules)),
        "rules-INITIAL_FORMS": str(len(rules)),
        "rules-MIN_NUM_FORMS": "0",
        "rules-MAX_NUM_FORMS": "1000",
    }
    for i, rule in enumerate(rules):
        data.update(
            {
                f"rules-{i}-id": str(rule.pk),
                f"rules-{i}-config": str(config.pk),
                f"rules-{i}-position": str(rule.position),
                f"rules-{i}-enabled": "on" if rule.enabled else "",
                f"rules-{i}-pim_field": rule.pim_field,
                f"rules-{i}-attribute": rule.attribute,
                f"rules-{i}-locale": rule.locale,
                f"rules-{i}-channel": rule.channel,
                f"rules-{i}-currency": rule.currency,
                f"rules-{i}-option_codes": "on" if rule.option_codes else "",
                f"rules-{i}-metadata_path": rule.metadata_path,
                f"rules-{i}-transform": rule.transform,
                f"rules-{i}-default": json.dumps(rule.default) if rule.default is not None else "",
                f"rules-{i}-path_glob": rule.path_glob,
                f"rules-{i}-mime_glob": rule.mime_glob,
            }
        )
    data.update(changes)
    # An unticked checkbox is not sent at all.
    return {k: v for k, v in data.items() if v != "" or not k.endswith(("-enabled", "-option_codes"))}


class TestMappingPage:
    def test_an_editor_changes_a_rule_and_it_is_in_the_history(self, client, people, world):
        as_user(client, people["Mapping editors"])
        assert client.get(MAPPING).status_code == 200
        response = client.post(MAPPING, mapping_form(**{"rules-1-transform": "lower"}))
        assert response.status_code == 302
        assert MappingRule.objects.get(metadata_path="wknd-suppliername").transform == "lower"
        entry = LogEntry.objects.get()
        assert entry.user == people["Mapping editors"]
        assert "Transform" in entry.get_change_message()

    def test_a_bad_expression_is_refused_with_a_message_in_the_form(self, client, people, world):
        as_user(client, people["Mapping editors"])
        response = client.post(MAPPING, mapping_form(**{"rules-0-pim_field": "values[?"}))
        assert response.status_code == 200
        assert "not a valid JMESPath expression" in response.content.decode()
        assert MappingRule.objects.get(metadata_path="wknd-skuid").pim_field == "SKUID"

    @pytest.mark.parametrize("role", ["Support", "Viewers"])
    def test_other_roles_cannot_change_rules(self, client, people, world, role):
        as_user(client, people[role])
        response = client.post(MAPPING, mapping_form(**{"rules-1-transform": "lower"}))
        assert response.status_code == 403
        assert MappingRule.objects.get(metadata_path="wknd-suppliername").transform == "upper"

    def test_the_preview_shows_unsaved_edits_against_the_asset_and_writes_nothing(self, client, people, history, world):
        as_user(client, people["Mapping editors"])
        patches, calls = len(world.aem.patches), len(world.aem.calls)
        url = reverse("admin:pimsync_mappingconfig_preview")
        data = mapping_form(**{"rules-1-transform": "lower", "preview_event": history["succeeded"].event_id})
        page = client.post(url, data).content.decode()
        assert "These results use your unsaved edits" in page
        assert 'class="old">NORDWAND OUTDOOR' in page and 'class="new">nordwand outdoor' in page
        assert "Save these rules" in page
        assert MappingRule.objects.get(metadata_path="wknd-suppliername").transform == "upper"
        assert len(world.aem.patches) == patches
        assert [method for method, _ in world.aem.calls[calls:]] == ["GET"]

    def test_the_preview_by_product_key_uses_the_saved_rules(self, client, people, history):
        as_user(client, people["Viewers"])
        page = client.get(
            reverse("admin:pimsync_mappingconfig_preview"), {"preview_key": "SKU-100001"}
        ).content.decode()
        assert 'id="rule-results"' in page and "Nothing: AEM already holds these values." in page
        missing = client.get(reverse("admin:pimsync_mappingconfig_preview"), {"preview_key": "NOPE"}).content.decode()
        assert "Product &#x27;NOPE&#x27; is not in the PIM." in missing

    def test_export_and_import_from_the_ui(self, client, people, world):
        from django.core.files.uploadedfile import SimpleUploadedFile

        as_user(client, people["Mapping editors"])
        exported = client.get(reverse("admin:pimsync_mappingconfig_export"))
        document = json.loads(exported.content)
        assert exported["Content-Disposition"].startswith("attachment")
        document["rules"] = document["rules"][:1]
        upload = SimpleUploadedFile("rules.json", json.dumps(document).encode(), "application/json")
        response = client.post(reverse("admin:pimsync_mappingconfig_import"), {"file": upload})
        assert response.status_code == 302
        assert MappingRule.objects.count() == 1
        assert "Imported 1 mapping rule(s) from rules.json" in LogEntry.objects.get().change_message

    def test_a_bad_import_changes_nothing_and_says_why(self, client, people, world):
        from django.core.files.uploadedfile import SimpleUploadedFile

        as_user(client, people["Mapping editors"])
        upload = SimpleUploadedFile("bad.json", b'{"rules": [{"pim_field": "[", "metadata_path": "a:b"}]}')
        page = client.post(reverse("admin:pimsync_mappingconfig_import"), {"file": upload}).content.decode()
        assert "Nothing was changed" in page and "JMESPath" in page
        assert MappingRule.objects.count() == 4

    def test_support_cannot_import(self, client, people, world):
        as_user(client, people["Support"])
        assert client.get(reverse("admin:pimsync_mappingconfig_import")).status_code == 403


def test_every_page_loads_the_dashboard_stylesheet_once(client, people, history):
    as_user(client, people["Mapping editors"])
    pages = [
        "/admin/",
        EVENTS,
        f"{EVENTS}{history['failed'].pk}/change/",
        reverse("admin:pimsync_event_jobs"),
        MAPPING,
        reverse("admin:pimsync_mappingconfig_preview"),
    ]
    for url in pages:
        assert client.get(url).content.decode().count("dashboard/dashboard.css") == 1, url


def test_setup_roles_can_run_twice(people):
    out = io.StringIO()
    call_command("setup_roles", stdout=out)
    assert "Updated Support" in out.getvalue()
    assert set(Group.objects.get(name="Support").permissions.values_list("codename", flat=True)) == {
        "view_event",
        "view_attempt",
        "view_mappingconfig",
        "view_mappingrule",
        "view_alert",
        "view_asset",
        "retry_event",
        "resync_asset",
        "silence_alert",
    }


class TestEventListLookups:
    """Only the list's declared filters and its search box select events."""

    @pytest.mark.parametrize(
        "query",
        [
            {"payload__icontains": "x"},
            {"reason__regex": "(a+)+$"},
            {"asset_path__contains": "x"},
            {"status__in": "failed,succeeded"},
            {"id__gt": "0"},
            {"foo": "bar"},
        ],
    )
    def test_a_viewer_cannot_run_other_lookups(self, client, people, history, query):
        as_user(client, people["Viewers"])
        client.get(EVENTS)  # warm the session and content-type caches
        with CaptureQueriesContext(connection) as queries:
            response = client.get(EVENTS, query)
        assert response.status_code == 400
        assert not [q["sql"] for q in queries if "pimsync_event" in q["sql"]]  # refused before any query

    def test_the_declared_filters_search_and_ordering_still_work(self, client, people, history):
        from django.utils import timezone

        as_user(client, people["Viewers"])
        today = str(timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0))
        for query in (
            {"status__exact": "failed"},
            {"type": "aem.assets.asset.processing_completed", "error": "pim"},
            {"received_at__gte": today, "q": "SKU-100002"},
            {"o": "6.-2", "p": "0"},
            {"o": "99"},
            {"o": "x"},
            {"e": "1"},
            {"_facets": "True"},
        ):
            response = client.get(EVENTS, query)
            assert response.status_code == 200, query
        assert (
            "SKU-100002_front.png" in client.get(EVENTS, {"error": "pim", "status__exact": "failed"}).content.decode()
        )
        assert "SKU-100002_front.png" not in client.get(EVENTS, {"status__exact": "succeeded"}).content.decode()

    def test_the_detail_page_of_a_filtered_list_keeps_its_filters(self, client, people, history):
        as_user(client, people["Support"])
        url = f"{EVENTS}{history['failed'].pk}/change/?_changelist_filters=status__exact%3Dfailed"
        page = client.get(url)
        assert page.status_code == 200 and 'id="retry-button"' in page.content.decode()

    def test_facets_cannot_make_the_list_count_every_filter_choice(self, client, people, history):
        as_user(client, people["Viewers"])
        client.get(EVENTS)
        with CaptureQueriesContext(connection) as plain:
            client.get(EVENTS)
        with CaptureQueriesContext(connection) as faceted:
            assert client.get(EVENTS, {"_facets": "True"}).status_code == 200
        assert len(faceted) == len(plain)


class TestPercentile:
    """The one percentile the overview and the benchmark use."""

    def test_it_interpolates_like_the_standard_librarys_inclusive_quantiles(self):
        values = [0.2, 0.1, 0.4, 0.3, 1.0]
        assert percentile(values, 0.5) == 0.3
        assert percentile(values, 0.95) == statistics.quantiles(values, n=100, method="inclusive")[94]
        assert percentile(values, 0.95) == pytest.approx(0.88)

    def test_edges(self):
        assert percentile([], 0.5) is None
        assert percentile([7.0], 0.99) == 7.0
        assert percentile([3.0, 1.0, 2.0], 0.0) == 1.0 and percentile([3.0, 1.0, 2.0], 1.0) == 3.0
        with pytest.raises(ValueError):
            percentile([1.0, 2.0], 0.999)


def test_setup_roles_fails_when_a_permission_is_missing(db):
    from django.contrib.auth.models import Permission

    Permission.objects.filter(codename="retry_event").delete()  # as before `migrate` has run
    out = io.StringIO()
    with pytest.raises(CommandError, match="run `manage.py migrate` first.*Support lacks retry_event"):
        call_command("setup_roles", stdout=out)
    assert "Created Viewers" in out.getvalue()  # the groups exist, with what could be given


class TestEveryAdminList:
    """Every list on the site, Django's and django-q2's included, selects rows only by the filters
    it declares: a lookup typed into the address never reaches the database."""

    PATTERN = "(.+)+!"  # backtracks exponentially on a long text without "!"

    @staticmethod
    def lists():
        from django.contrib import admin

        for model in admin.site._registry:
            yield model, reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")

    @staticmethod
    def text_field(model) -> str:
        from django.db.models import CharField, TextField

        return next(f.name for f in model._meta.fields if isinstance(f, CharField | TextField))

    def test_a_regular_expression_lookup_is_refused_on_every_list(self, client, people, history, admin_user):
        as_user(client, admin_user)
        for model, url in self.lists():
            plain = client.get(url)
            lookup = f"{self.text_field(model)}__regex"
            with CaptureQueriesContext(connection) as queries:
                response = client.get(url, {lookup: self.PATTERN})
            assert not [q["sql"] for q in queries if self.PATTERN in q["sql"]], url
            if plain.status_code == 200:  # a list (the mapping's goes straight to its one row)
                assert response.status_code == 400, url
                assert "This filter is not understood" in response.content.decode(), url

    def test_every_filter_a_list_offers_still_selects(self, client, people, history, admin_user):
        import re

        as_user(client, admin_user)
        followed = 0
        for _, url in self.lists():
            page = client.get(url)
            if page.status_code != 200:
                continue
            sidebar = page.content.decode().partition('id="changelist-filter"')[2].partition("</nav>")[0]
            for link in set(re.findall(r'href="(\?[^"]+)"', sidebar)):
                response = client.get(url + link.replace("&amp;", "&"))
                assert response.status_code == 200, url + link
                followed += 1
        assert followed > 30  # status, type, date, error class, condition, staff, groups, clusters…


class TestEveryChangePage:
    """A change page asks who is asking before it reads anything, and an id that cannot be one is
    a 404 (or Django's own "does not exist" redirect), never a 500."""

    def test_without_permission_every_change_page_is_a_403_whatever_the_id(self, client, history):
        from django.contrib.auth.models import User

        as_user(client, User.objects.create_user("nobody", password="pw-for-tests-1", is_staff=True))
        for _, url in TestEveryAdminList.lists():
            for object_id in ("abc", "999999", str(history["failed"].pk)):
                assert client.get(f"{url}{object_id}/change/").status_code == 403, (url, object_id)

    def test_an_id_that_is_not_a_number_is_a_404_not_a_500(self, client, history, admin_user):
        as_user(client, admin_user)
        assert client.get(f"{EVENTS}abc/change/").status_code == 404
        assert client.get("/admin/pimsync/asset/no-such-asset/change/").status_code == 404
        for _, url in TestEveryAdminList.lists():
            assert client.get(f"{url}abc/change/").status_code in (302, 404), url


class TestUploadLimits:
    """An upload larger than its page takes is refused before Django reads the form: reading it
    would store the file (in memory, or on disk above 2.5 MB) whatever the page then says."""

    @pytest.mark.parametrize(
        ("url", "limit", "says"),
        [
            ("/admin/pimsync/asset/backfill/", 10 * 1024 * 1024, "at most 10 MB"),
            ("/admin/pimsync/mappingconfig/import/", 1024 * 1024, "at most 1 MB"),
            (EVENTS, 2.5 * 1024 * 1024, "at most 2.5 MB"),  # a page that takes no file at all
        ],
    )
    def test_a_body_over_the_limit_is_refused_before_the_form_is_read(self, world, admin_user, url, limit, says):
        from django.core.files.uploadedfile import SimpleUploadedFile
        from django.test import Client

        # The CSRF check reads the form to find its token: without a token, an answer other than
        # 403 means the body was refused before anything read it.
        client = Client(enforce_csrf_checks=True)
        client.force_login(admin_user)
        rules = MappingRule.objects.count()
        content = b"asset_id,path\n" + b"x" * int(limit + 100 * 1024)
        response = client.post(url, {"file": SimpleUploadedFile("big.csv", content, "text/csv")})
        assert response.status_code == 413
        assert says in response.content.decode() and "Nothing was stored" in response.content.decode()
        assert MappingRule.objects.count() == rules

    def test_an_upload_within_the_limit_reaches_its_form(self, world, admin_user):
        from django.core.files.uploadedfile import SimpleUploadedFile
        from django.test import Client

        client = Client(enforce_csrf_checks=True)
        client.force_login(admin_user)
        response = client.post(MAPPING.replace("1/change/", "import/"), {"file": SimpleUploadedFile("r.json", b"{}")})
        assert response.status_code == 403  # the CSRF check read it, and found no token
