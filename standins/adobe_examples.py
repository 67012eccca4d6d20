"""Adobe's own published examples, as data: what the journal and the Assets Author API answer.

Copied from Adobe's documentation and SDK test fixtures (the source is named beside each), so that
tests/test_conformance_adobe.py replays them through pimsync's real clients. Where an example is
abridged in the source, so is it here; nothing is made up to fill a gap.
"""

from __future__ import annotations

# --- I/O Events Journaling API ----------------------------------------------------------------

# adobe/aio-lib-events, test/mock.js: the registration path its fixtures use.
SDK_JOURNAL_PATH = "/events/organizations/orgId/integrations/integId/regId"

# adobe/aio-lib-events, test/mock.js, `journalResponseHeader200.headers.link` (one header, the SDK
# joins the list with commas). `next` sits under /events-fast/, the rest under /events/ and
# /count/, `validate` under /events-validate/.
SDK_JOURNAL_LINKS = [
    '</events/organizations/orgId/integrations/integId/regId>; rel="events"',
    '</events-fast/organizations/orgId/integrations/integId/regId?since=position-1>; rel="next"',
    '</count/organizations/orgId/integrations/integId/regId?since=position-1>; rel="count"',
    '</events/organizations/orgId/integrations/integId/regId?latest=true>; rel="latest"',
    '</events/organizations/orgId/integrations/integId/regId?since={position}&limit={count}>; rel="page"',
    '</events/organizations/orgId/integrations/integId/regId?seek={duration}&limit={count}>; rel="seek"',
    '</events-validate/organizations/orgId/integrations/integId/regId?since=position-1>; rel="validate"',
]

# adobe/aio-lib-events, test/mock.js, `journalResponseBody` (an XDM event of the SDK's tests, not
# an AEM CloudEvent: pimsync must count it unreadable and go on).
SDK_JOURNAL_BODY = {
    "events": [
        {
            "position": "position-2",
            "event": {
                "header": {
                    "msgType": "xdmEntityProjectionEvent",
                    "msgId": "msdId",
                    "msgVersion": "1.0.0",
                    "xactionId": "action-id",
                    "createdAt": 1545303830289,
                    "originalTimestamp": 1545303830046,
                    "imsOrgId": "test-org",
                    "xdmSchema": {"name": "_xdm.context.profile", "version": "0.9.9.7"},
                    "_adobeio": {"eventCode": "test-event-code", "imsOrgId": "test-org", "providerMetadata": "test-pm"},
                },
                "body": {"hello": "world"},
            },
        }
    ],
    "_page": {"last": "position-1", "count": 1},
}

# adobe/aio-lib-events, test/mock.js: the `retry-after` values of `journalResponseHeader204`,
# `journalResponseHeader204DateTime` and `journalResponseHeader204InvalidTime`; and
# `journalResponseHeader204MissingLinks`, a 204 with no `link` at all.
SDK_RETRY_AFTER_SECONDS = "10"
SDK_RETRY_AFTER_DATE = "01 Jan 1970 00:00:10 GMT"
SDK_RETRY_AFTER_INVALID = "not::a::valid::date"

# https://developer.adobe.com/events/docs/guides/api/journaling-api/ ("Fetching events from the end
# of the journal"): the end, with one `Link` header line per relation; `validate` is
# `…/{registration}/validate?since=` here, not the SDK fixtures' /events-validate/.
GUIDE_REGISTRATION_PATH = "/events/organizations/23294/integrations/54108/f89067f2-0d50-4bb2-bf78-209d0eacb6eb"
GUIDE_POSITION = "rabbit:f9645ec8-34f2-4188-bf6e-cea4b2784fda:7dd9e3c4-0d3f-42d5-abb4-1776e209b080"
GUIDE_END_LINKS = [
    f'<{GUIDE_REGISTRATION_PATH}?since={GUIDE_POSITION}>; rel="next"',
    f'<{GUIDE_REGISTRATION_PATH}/validate?since={GUIDE_POSITION}>; rel="validate"',
]

# The same page, "Fetching expired events": 410 Gone with a plain-text body.
GUIDE_EXPIRED_POSITION = "moose:e7ba778b-dace-4994-96e7-da80e7125233:2159b72c-e284-4899-b572-08da250e3614"
GUIDE_EXPIRED_BODY = f"Events at position {GUIDE_EXPIRED_POSITION} have expired."

# --- AEM Assets Author API ----------------------------------------------------------------------

# Adobe's "Metadata Schemas developer guide" (developer.adobe.com/experience-cloud/
# experience-manager-apis/guides/metadata-schema/, "Response envelope"): the GET answer. The ETag
# is also in `repositoryMetadata["repo:etag"]`, "use with If-Match (PATCH)".
GUIDE_METADATA_GET = {
    "assetId": "urn:aaid:aem:75ebc086-fad4-4682-bc3d-41f3f8a48d63",
    "assetMetadata": {
        "dc:title": "City Skyline at Dusk",
        "dc:description": "Photography for the Q3 campaign",
        "dc:subject": ["photography", "urban"],
    },
    "repositoryMetadata": {
        "repo:assetClass": "file",
        "repo:assetId": "urn:aaid:aem:75ebc086-fad4-4682-bc3d-41f3f8a48d63",
        "repo:createDate": "2025-11-01T09:00:00.000Z",
        "repo:etag": '"a3f8b2c1"',
        "repo:modifyDate": "2026-01-15T14:30:00.000Z",
        "repo:name": "city-skyline.jpg",
        "repo:path": "/content/dam/marketing/city-skyline.jpg",
    },
}
