"""Mapping rules under hostile input: patterns that would backtrack for hours, values longer than
their columns, product keys that would leave their path segment."""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import re
import signal

import jmespath
import pytest
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from werkzeug import Response

from pimsync import expressions, mapping, patterns
from pimsync.models import Event, MappingConfig, MappingRule, Status
from pimsync.outbound import http
from pimsync.pim import connectors
from tests.conftest import STANDARD_MAPPING, make_event, product
from tests.test_dashboard import MAPPING, mapping_form

pytestmark = pytest.mark.django_db

PREVIEW = "/admin/pimsync/mappingconfig/preview/"
# Python's re needs about 1.6^n steps for `(?:a|aa)*b` on n a's: at 100, longer than the universe
# has existed. RE2 answers at once.
CATASTROPHIC = r"(?:a|aa)*b"
LONG_NAME = "a" * 100 + ".png"


@contextlib.contextmanager
def deadline(seconds: int = 20):
    """Fail (rather than hang) if the block runs longer than `seconds`; `re` checks for signals."""

    def expire(signum, frame):
        raise AssertionError(f"still running after {seconds}s: a pattern is evaluated in super-linear time")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def user_in(role: str) -> User:
    call_command("setup_roles", stdout=io.StringIO())
    user = User.objects.create_user(role.split()[0].lower(), password="pw-for-tests-1", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def editor(client):
    client.force_login(user_in("Mapping editors"))
    return client


@pytest.fixture
def viewer(client):
    client.force_login(user_in("Viewers"))
    return client


def deliver(world, client, n: int, name: str) -> Event:
    event = make_event(n, name=name)
    world.aem.add_asset(event["data"]["assetId"], {"dc:format": "image/png"})
    world.adobe.deliver(client, event)
    return Event.objects.get(event_id=event["event_id"])


class TestKeyPatternsRunInLinearTime:
    def test_the_worker_answers_at_once_for_a_catastrophic_pattern(self, client, world):
        mapping.import_config({**STANDARD_MAPPING, "product_key": {"from": "asset_name", "pattern": CATASTROPHIC}})
        event = deliver(world, client, 1, LONG_NAME)
        with deadline():
            world.drain()
        event.refresh_from_db()
        assert (event.status, event.error_class) == (Status.FAILED, "mapping")
        assert f"the product key pattern {CATASTROPHIC!r} does not match" in event.reason
        assert world.pim.calls == []

    def test_the_preview_of_an_unsaved_catastrophic_pattern_answers_at_once(self, client, world, editor):
        event = deliver(world, client, 1, LONG_NAME)
        with deadline():
            response = editor.post(PREVIEW, mapping_form(key_pattern=CATASTROPHIC, preview_event=event.event_id))
        page = response.content.decode()
        assert response.status_code == 200
        assert "These results use your unsaved edits" in page and "does not match" in page
        assert MappingConfig.load().key_pattern == STANDARD_MAPPING["product_key"]["pattern"]

    def test_a_named_group_still_picks_the_key(self):
        asset = mapping.AssetRef("urn:aaid:aem:1", "/content/dam/p/SKU-7_side.jpg", "SKU-7_side.jpg", "image/jpeg")
        config = MappingConfig(key_from="asset_path", key_pattern=r"/p/(?P<key>[^/_]+)_")
        assert mapping.product_key(asset, config) == "SKU-7"

    @pytest.mark.parametrize(
        "pattern",
        [r"^(?P<key>\w+)(?=_)", r"(?<!x)(?P<key>\w+)", r"(?P<k>a)(?P<key>b)\1", r"(?P<key>a)(?P=key)"],
    )
    def test_lookaround_and_backreferences_are_refused_with_a_clear_message(self, pattern):
        with pytest.raises(ValidationError) as error:
            MappingConfig(key_pattern=pattern).full_clean()
        message = " ".join(error.value.message_dict["key_pattern"])
        assert "RE2 (linear-time) does not support lookahead/lookbehind or backreferences" in message

    def test_the_form_shows_why_a_lookahead_is_refused_and_saves_nothing(self, editor, world):
        response = editor.post(MAPPING, mapping_form(key_pattern=r"^(?P<key>\w+)(?=_)"))
        assert response.status_code == 200
        assert "does not support lookahead/lookbehind or backreferences" in response.content.decode()
        assert MappingConfig.load().key_pattern == STANDARD_MAPPING["product_key"]["pattern"]


class TestGlobs:
    @hypothesis_settings(max_examples=500, deadline=None)
    @given(
        st.text(st.sampled_from(list("ab-]![*?^\\/.") + ["é", "\n"]), max_size=10),
        st.text(st.sampled_from(list("ab-]![*?^\\/.") + ["é", "\n"]), max_size=10),
    )
    def test_a_glob_matches_what_fnmatch_matches(self, glob, text):
        assert patterns.glob_matches(glob, text) == fnmatch.fnmatchcase(text, glob)

    def test_a_hostile_glob_on_the_longest_path_answers_at_once(self):
        rules = [MappingRule(pim_field="SKUID", metadata_path="pim:sku", path_glob="*a" * 200 + "*b")]
        asset = mapping.AssetRef("urn:aaid:aem:1", "/" + "a" * 1023, "a.png", "image/png")
        with deadline():
            planned = mapping.plan(asset, "k", {"SKUID": "x"}, {}, rules)
        assert planned.results[0].applies is False


def too_long_rule_file(tmp_path, **rule) -> str:
    document = {**STANDARD_MAPPING, "rules": [*STANDARD_MAPPING["rules"], {"pim_field": "x", **rule}]}
    path = tmp_path / "long.json"
    path.write_text(json.dumps(document))
    return str(path)


class TestOverLongValuesAreRefused:
    """Every write path validates through the models: a clear message per field, nothing stored."""

    def test_the_import_command_names_the_field_and_changes_nothing(self, tmp_path):
        mapping.import_config(STANDARD_MAPPING)
        path = too_long_rule_file(tmp_path, metadata_path="p:" + "a" * 298)
        with pytest.raises(CommandError) as error:
            call_command("import_mappings", path)
        assert "nothing was changed" in str(error.value)
        assert "metadata_path: Ensure this value has at most 255 characters (it has 300)" in str(error.value)
        assert mapping.export_config() == STANDARD_MAPPING

    def test_an_over_long_key_pattern_in_an_import_is_refused(self):
        mapping.import_config(STANDARD_MAPPING)
        pattern = "(?P<key>" + "a" * 591 + ")"
        with pytest.raises(ValidationError) as error:
            mapping.import_config({**STANDARD_MAPPING, "product_key": {"from": "asset_name", "pattern": pattern}})
        assert "key_pattern: Ensure this value has at most 500 characters (it has 600)" in " ".join(error.value)
        assert mapping.export_config() == STANDARD_MAPPING

    def test_an_over_long_metadata_property_and_an_unknown_choice_are_refused(self):
        mapping.import_config(STANDARD_MAPPING)
        bad = {"product_key": {"from": "metadata:" + "p" * 300}, "rules": [{"pim_field": "x", "metadata_path": "a:b"}]}
        with pytest.raises(ValidationError) as error:
            mapping.import_config(bad)
        assert "key_metadata_property: Ensure this value has at most 255 characters" in " ".join(error.value)
        with pytest.raises(ValidationError, match="not a valid choice"):
            mapping.import_config({**bad, "product_key": {"from": "asset_title"}})
        assert mapping.export_config() == STANDARD_MAPPING

    def test_a_deeply_nested_pim_field_is_a_message_not_a_crash(self):
        with pytest.raises(ValidationError) as error:
            MappingRule(pim_field="!" * 499 + "a", metadata_path="a:b").full_clean()
        assert "nested too deeply" in " ".join(error.value.message_dict["pim_field"])

    def test_the_import_page_says_why_and_changes_nothing(self, editor, world, tmp_path):
        path = too_long_rule_file(tmp_path, metadata_path="p:" + "a" * 298)
        with open(path, "rb") as handle:
            upload = SimpleUploadedFile("long.json", handle.read(), "application/json")
        response = editor.post(reverse("admin:pimsync_mappingconfig_import"), {"file": upload})
        page = response.content.decode()
        assert response.status_code == 200
        assert "Nothing was changed" in page and "at most 255 characters (it has 300)" in page
        assert mapping.export_config() == STANDARD_MAPPING

    @pytest.mark.parametrize(
        "field, value, message",
        [
            ("key_pattern", "(?P<key>" + "a" * 591 + ")", "at most 500 characters (it has 600)"),
            ("rules-0-metadata_path", "p:" + "a" * 298, "at most 255 characters (it has 300)"),
            ("rules-1-pim_field", "a." * 300 + "b", "at most 500 characters (it has 601)"),
            ("rules-1-pim_field", "!" * 499 + "a", "nested too deeply"),
            ("rules-1-pim_field", "@" + "|[@,@]" * 20, "multiselects in a row, such as [@,@]|[@,@], multiply it"),
        ],
    )
    def test_the_form_and_the_previews_save_refuse_with_a_message(self, editor, world, field, value, message):
        data = mapping_form(**{field: value})
        preview = editor.post(PREVIEW, {**data, "preview_key": "SKU-100001"}).content.decode()
        assert message in preview and "Save these rules" not in preview
        # "Save these rules" posts the previewed form to the change page, as a browser would.
        response = editor.post(MAPPING, data)
        assert response.status_code == 200
        assert message in response.content.decode()
        assert mapping.export_config() == STANDARD_MAPPING


def nested(depth: int) -> dict:
    """A mapping file whose one rule's default is a list nested `depth` levels deep (built flat:
    the text, not a Python structure, so any depth can be written)."""
    rule = '{"pim_field": "SKUID", "metadata_path": "wknd-skuid", "default": ' + "[" * depth + "]" * depth + "}"
    return '{"product_key": {"from": "asset_name"}, "rules": [' + rule + "]}"


# What an import must refuse whole, with the message that says why. The depth counts the document,
# its rules list and the rule: a default nested 29 levels deep makes 32.
HOSTILE_FILES = [
    pytest.param(
        json.dumps(STANDARD_MAPPING) + " " * (1024 * 1024),
        "larger than 1 MB; a mapping file is at most",
        id="over 1 MB",
    ),
    pytest.param(nested(100_000), "nested more than 32 levels deep", id="100,000 deep"),
    pytest.param(nested(500), "nested more than 32 levels deep", id="500 deep"),
    pytest.param(
        json.dumps({"rules": [{"pim_field": "SKUID", "metadata_path": "a:b", "default": "x\u0000"}]}),
        "NUL character",
        id="NUL",
    ),
]


class TestHostileImportFiles:
    """A mapping file too large, nested too deeply or holding what PostgreSQL cannot store is
    refused whole with a message, from the page and the command; nothing changes."""

    @pytest.mark.parametrize(("text", "message"), HOSTILE_FILES)
    def test_the_import_page_refuses_it_with_a_message(self, editor, world, text, message):
        upload = SimpleUploadedFile("rules.json", text.encode(), "application/json")
        response = editor.post(reverse("admin:pimsync_mappingconfig_import"), {"file": upload})
        page = response.content.decode()
        assert response.status_code == 200
        assert "Nothing was changed" in page and message in page
        assert mapping.export_config() == STANDARD_MAPPING

    @pytest.mark.parametrize(("text", "message"), HOSTILE_FILES)
    def test_the_import_command_refuses_it_with_a_message(self, tmp_path, text, message):
        mapping.import_config(STANDARD_MAPPING)
        path = tmp_path / "rules.json"
        path.write_text(text)
        with pytest.raises(CommandError, match=message):
            call_command("import_mappings", str(path))
        assert mapping.export_config() == STANDARD_MAPPING

    def test_a_default_nested_as_deep_as_allowed_is_imported(self, tmp_path):
        path = tmp_path / "rules.json"
        path.write_text(nested(29))
        call_command("import_mappings", str(path), stdout=io.StringIO())
        assert MappingRule.objects.get().default == json.loads(nested(29))["rules"][0]["default"]


# Each [@,@] doubles the product: 2^16 copies of it, as JSON some 13 MB from a 90-character rule.
DOUBLING = "@" + "|[@,@]" * 16


class TestRuleValuesAreBounded:
    """A JMESPath value may grow exponentially with its expression; what a rule yields is bounded."""

    def test_the_worker_fails_a_saved_rule_that_multiplies_the_product_and_writes_nothing(self, client, world):
        # Saved before rules were checked for this: straight into the table, as an old row would be.
        MappingRule.objects.create(config=MappingConfig.load(), position=99, pim_field=DOUBLING, metadata_path="a:b")
        world.pim.products["SKU-100001"] = product("SKU-100001")
        event = deliver(world, client, 1, "SKU-100001_front.png")
        with deadline():
            world.drain()
        event.refresh_from_db()
        assert (event.status, event.error_class) == (Status.FAILED, "mapping")
        assert "→ a:b: it yields a value over 100,000 items or 1,000 kB" in event.reason
        assert world.aem.patches == []

    def test_the_worker_fails_a_saved_rule_that_does_not_parse_with_its_reason(self, client, world):
        # Saved around the form's validation, as an old row or a hand-edited table would be; the
        # only rule, so that it is the first one the plan reads.
        MappingRule.objects.all().delete()
        config = MappingConfig.load()
        MappingRule.objects.create(config=config, position=1, pim_field="values..name", metadata_path="a:b")
        world.pim.products["SKU-100001"] = product("SKU-100001")
        event = deliver(world, client, 1, "SKU-100001_front.png")
        world.drain()
        event.refresh_from_db()
        assert (event.status, event.error_class) == (Status.FAILED, "mapping")
        assert "→ a:b" in event.reason
        assert world.aem.patches == []

    def test_the_preview_names_the_rule_whose_value_is_too_large(self, client, world, editor):
        world.pim.products["SKU-100001"] = {**product("SKU-100001"), "Description": "d" * 100_000}
        twelve = "[" + ", ".join(["Description"] * 12) + "]"  # a shape that may be saved; 1.2 MB here
        with deadline():
            response = editor.post(
                PREVIEW, {**mapping_form(**{"rules-1-pim_field": twelve}), "preview_key": "SKU-100001"}
            )
        page = response.content.decode()
        assert response.status_code == 200
        assert "it yields a value over 100,000 items or 1,000 kB" in page
        assert "d" * 100_000 not in page

    def test_saving_a_rule_that_multiplies_the_product_is_refused_with_a_message(self):
        with pytest.raises(ValidationError) as error:
            MappingRule(pim_field=DOUBLING, metadata_path="a:b").full_clean()
        assert "can repeat the product's data more than 100 times" in " ".join(error.value.message_dict["pim_field"])
        usual = "{sku: SKUID, name: values.name[0].data, colours: colours}"
        MappingRule(pim_field=usual, metadata_path="a:b").full_clean(exclude=["config"])


class TestProductKeysStayInTheirSegment:
    @pytest.fixture
    def pim_server(self, httpserver, settings):
        """A PIM under /api/v1 that records every request's raw path and whether it carried the token."""
        seen = []

        def handle(request):
            seen.append((request.environ.get("REQUEST_URI") or request.environ.get("RAW_URI"), request.headers))
            return Response(json.dumps(product("x")), content_type="application/json")

        httpserver.expect_request(re.compile(".*")).respond_with_handler(handle)
        settings.PIM_CONNECTOR = "rest"
        settings.PIM_BASE_URL = httpserver.url_for("/api/v1").rstrip("/")
        settings.PIM_PRODUCT_PATH = "/products/{key}"
        settings.PIM_API_TOKEN = "pim-secret-token"
        return seen

    def test_every_reserved_character_is_quoted(self, pim_server):
        assert connectors.connector().get_product("SKU 1/../x?y=1#z%") is not None
        assert [path for path, _ in pim_server] == ["/api/v1/products/SKU%201%2F..%2Fx%3Fy%3D1%23z%25"]

    @pytest.mark.parametrize("key", ["..", ".", ""])
    def test_dot_segments_and_empty_keys_never_reach_the_pim(self, pim_server, key):
        with pytest.raises(http.HttpError) as error:
            connectors.connector().get_product(key)
        assert error.value.error_class == "mapping" and not error.value.retryable
        assert "cannot be a product key" in error.value.message
        assert pim_server == []

    def test_an_asset_whose_key_is_dot_dot_fails_with_a_mapping_reason(self, client, world):
        mapping.import_config({**STANDARD_MAPPING, "product_key": {"from": "asset_name"}})
        event = deliver(world, client, 1, "...png")  # the name without its extension is ".."
        world.drain()
        event.refresh_from_db()
        assert (event.status, event.error_class) == (Status.FAILED, "mapping")
        assert "'..' cannot be a product key" in event.reason
        pim_requests = [
            request.path
            for request, _ in world.pim.server.log
            if request.headers.get("Authorization") == f"Bearer {world.pim.TOKEN}"
        ]
        assert pim_requests == []

    def test_a_viewer_previewing_dot_dot_sees_why_and_the_pim_is_not_asked(self, viewer, pim_server):
        response = viewer.get(PREVIEW, {"preview_key": ".."})
        page = response.content.decode()
        assert response.status_code == 200
        assert "cannot be a product key" in page
        assert pim_server == []

    def test_a_key_longer_than_its_column_fails_the_event_with_a_mapping_reason(self, client, world):
        mapping.import_config({**STANDARD_MAPPING, "product_key": {"from": "asset_path"}})
        event = deliver(world, client, 1, "k" * 250 + ".png")  # the path is longer than 255
        world.drain()
        event.refresh_from_db()
        assert (event.status, event.error_class) == (Status.FAILED, "mapping")
        assert "at most 255 are allowed" in event.reason


class TestPreviewInput:
    @pytest.mark.parametrize("reference", ["9" * 5000, "²"])
    def test_a_preview_of_an_event_id_that_is_no_number_says_there_is_none(self, viewer, reference):
        response = viewer.get(PREVIEW, {"preview_event": reference})
        assert response.status_code == 200
        assert "No stored event has the id" in response.content.decode()


# JSON documents of nested objects, lists and scalars, keyed by the names the paths use.
KEYS = st.sampled_from(["a", "b", "SKUID", "price", "amount", "with space"])
DOCUMENTS = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)


class TestFieldPaths:
    """Rules that only walk down fields are read without the interpreter: the same values."""

    @given(st.lists(KEYS, min_size=1, max_size=4), DOCUMENTS)
    @hypothesis_settings(max_examples=300)
    def test_a_field_path_reads_what_jmespath_reads(self, keys, document):
        expression = ".".join(json.dumps(key) for key in keys)  # quoted identifiers, any name
        assert expressions.is_field_path(expression)
        assert expressions.search(expression, document) == jmespath.search(expression, document)

    @pytest.mark.parametrize("expression", ["a[0]", "a.b[0]", "a | b", "a.*", "[a, b]", "`1`", "@", "a.b[?c]"])
    def test_other_expressions_are_not_field_paths(self, expression):
        assert not expressions.is_field_path(expression)

    def test_a_bad_expression_is_still_jmespaths_error(self):
        with pytest.raises(jmespath.exceptions.ParseError):
            expressions.search("a..b", {"a": {}})
