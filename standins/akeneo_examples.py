"""Akeneo's own published examples, as data: what the Akeneo stand-in answers and sends when a test
wants Akeneo exactly as Akeneo documents itself, not as pimsync's authors read it.

Every example below is copied from `akeneo/pim-api-docs` (the source of api.akeneo.com), commit
61ef548 of 2026-08-18, with its public page and its file in that repository beside it. The JSON
texts are Akeneo's, character for character; the words around them are ours. Where Akeneo's text
is not usable as it stands, the fix is ours and says so:

- Both Event Platform samples (`product.updated`, `product.deleted`) lack the comma between the
  `product` and `author` members of `data`, so they are not valid JSON. `EVENT_PLATFORM_UPDATED`
  and `EVENT_PLATFORM_DELETED` are the published texts with that one comma added; the published
  texts are kept as `*_AS_PUBLISHED`.
- The search_after page shows its items as `...`; `search_after_page()` fills them with products
  in Akeneo's standard format (the `resource` of the documented legacy event) and moves the links
  from demo.akeneo.com onto the stand-in's origin, keeping their paths and queries.
- No published example holds ten full events, though a legacy batch may: `legacy_batch()` builds
  one from the ten events of Akeneo's own log sample, each with the full product data the events
  reference documents (the log shows only the identifier "for clarity", its page says).
"""

# ruff: noqa: E501 (Akeneo's texts are kept as published, long lines and all)
from __future__ import annotations

import copy
import json
import uuid

DOCS_COMMIT = "61ef548d3546975527266fdc31ce1b0b1916b14d"  # akeneo/pim-api-docs, 2026-08-18

# --- the REST API: tokens -------------------------------------------------------------------------
# https://api.akeneo.com/documentation/authentication.html
# (akeneo/pim-api-docs content/rest-api/authentication.md, "Get a token" and "Refresh an expired token")

# The documented request: `Authorization: Basic base64(client_id:secret)`, a JSON body with the
# password grant. These are the example's own client id, secret, user and password.
TOKEN_REQUEST_AUTHORIZATION = "Basic NGdtNHJub2l6cDhnc2tna2swODBzc29vODAwNDBnNDRrc293d2d3ODQ0azQ0c2MwMHM6NWR5dm8xejZ5MzRzbzRvZ2tna3N3ODhvb2tvb3dzMDBjZ29jNDg4a2NzOHdrNGM0MHM="
TOKEN_REQUEST_CLIENT_ID = "4gm4rnoizp8gskgkk080ssoo80040g44ksowwgw844k44sc00s"
TOKEN_REQUEST_SECRET = "5dyvo1z6y34so4ogkgksw88ookoows00cgoc488kcs8wk4c40s"
TOKEN_REQUEST_BODY = {"grant_type": "password", "username": "myERPuser", "password": "64bngr78"}

# The answer to the password grant.
TOKEN_ANSWER = """{
    "access_token": "NzFiYTM4ZTEwMjcwZTcyZWIzZTA0NmY3NjE3MTIyMjM1Y2NlMmNlNWEyMTAzY2UzYmY0YWIxYmUzNTkyMDcyNQ",
    "expires_in": 3600,
    "token_type": "bearer",
    "scope": null,
    "refresh_token": "MDk2ZmIwODBkYmE3YjNjZWQ4ZTk2NTk2N2JmNjkyZDQ4NzA3YzhiZDQzMjJjODI5MmQ4ZmYxZjlkZmU1ZDNkMQ"
}"""

# The answer to the refresh grant: "the same as when asking for the initial token, except that it
# contains a new `access_token` and a new `refresh_token`".
REFRESH_ANSWER = """{
  "access_token": "MjkxYjM0ZGU0OGQzN2MzNmRmOGFkMzgxODdhMDZiNmE1MTI2ZDJmYmM5MTBhZWFiMGY0ZjE3YzJhOTJkOGRlZA",
  "expires_in": 3600,
  "token_type": "bearer",
  "scope": null,
  "refresh_token": "MTU2OWI5NGYwZTU2MThmMjE3MzRmYmIyMjlmYzU5Zjc3ZDhlM2E5YzQyMmIyMDVhOGY2OWQ3MTM0MTMzNmZlYw"
}"""

# --- the REST API: pages --------------------------------------------------------------------------
# https://api.akeneo.com/documentation/pagination.html (content/rest-api/pagination.md, "The
# Search-after method"). "This query parameter should never be set manually": a client follows
# `_links.next.href` as given. "The response will respect this structure, even if there are no
# items to return." The last page has no `next` link (the offset method's example shows one
# without it).
SEARCH_AFTER_PAGE_AS_PUBLISHED = """{
  "_links": {
    "self": {
      "href": "https://demo.akeneo.com/api/rest/v1/products-uuid?pagination_type=search_after&search_after=qaXbcde&limit=20"
    },
    "first": {
      "href": "https://demo.akeneo.com/api/rest/v1/products-uuid?pagination_type=search_after&limit=20"
    },
    "next": {
      "href": "https://demo.akeneo.com/api/rest/v1/products-uuid?pagination_type=search_after&search_after=qaXbcdedsfeF&limit=20"
    }
  },
  "_embedded": {
    "items": [
      ...
    ]
  }
}"""
DOCUMENTED_ORIGIN = "https://demo.akeneo.com"

# --- the REST API: errors -------------------------------------------------------------------------
# https://api.akeneo.com/documentation/responses.html (content/rest-api/responses.md)

# "401 error"
UNAUTHORIZED = """{
    "code": 401,
    "message": "Authentication is required"
}"""

# "422 error": invalid data, with an `errors` list.
VALIDATION_FAILED = """{
    "code": 422,
    "message": "Validation failed.",
    "errors": [
        {
            "property": "values",
            "message": "The tommh value is not in the brand attribute option list.",
            "attribute": "brand",
            "locale": null,
            "scope": null
        }
    ]
}"""

# "Sending unrecognized properties as well": the message at the top level, no `errors` list.
UNRECOGNIZED_PROPERTY = """{
    "code": 422,
    "message": "Property 'extra_property' does not exist. Check the standard format documentation.",
    "_links": {
        "documentation": {
            "href": "https://docs.akeneo.com/master/reference/standard_format/other_entities.html#category"
        }
    }
}"""

# "Or, sending unknown data": the message at the top level again.
UNKNOWN_DATA = """{
    "code": 422,
    "message": "The sunglasses category does not exist in your PIM. Check the expected format on the API documentation.",
    "_links": {
        "documentation": {
            "href": "http://api.akeneo.com/api-reference.html#post_products_uuid"
        }
    }
}"""

# "429 error": "A Retry-After header is added to the response indicating the time to wait in
# seconds before retrying." The example has no body.
TOO_MANY_REQUESTS_HEADERS = {"Retry-After": "15"}

# --- the Event Platform ---------------------------------------------------------------------------
# Headers: https://api.akeneo.com/event-platform/concepts.html (content/event-platform/concepts.md,
# "HMAC signature for webhook payloads"): the signature with the primary secret, the one with the
# secondary secret "if you have one", and the algorithm, "currently always HmacSHA256". The
# page's Node.js example computes the hex HMAC-SHA256 of the body.
SIGNATURE_PRIMARY = "X-AKENEO-SIGNATURE-PRIMARY"
SIGNATURE_SECONDARY = "X-AKENEO-SIGNATURE-SECONDARY"
SIGNATURE_ALGORITHM = "X-AKENEO-SIGNATURE-ALGORITHM"
ALGORITHM = "HmacSHA256"

# https://api.akeneo.com/event-platform/best-practices.html (content/event-platform/best-practices.md,
# "Deal with events generated by your own business logic"): the author's identifier is the client
# id of the connection that made the change.
EVENT_PLATFORM_UPDATED_AS_PUBLISHED = """{
  "specversion": "1.0",
  "id": "018e197c-dfe2-70f8-9346-1a8e016f5fbb",
  "source": "akeneo-event-platform",
  "type": "com.akeneo.pim.v1.product.updated",
  "subject": "0190fe8a-6213-76ce-8a9f-ba36a5ef555a",
  "datacontenttype": "application/json",
  "dataschema": "https://event.prd.sdk.akeneo.cloud/spec/com.akeneo.pim.v1.product.updated.schema.json",
  "time": "2024-03-07T15:16:37Z",
  "data": {
    "product": {
      "uuid": "3444ec1b-058e-4208-9b6c-284f47a7aa17"
    }
    "author": {
      "identifier": "b238e9f7-fcec-45bd-9431-d43cd624b244",
      "type": "api"
    }
  }
}"""

# https://api.akeneo.com/event-platform/concepts.html (content/event-platform/concepts.md, "Example
# of an event payload for a productDeleted event"); `identifier` is there only when the
# subscription sets `send_product_identifier`.
EVENT_PLATFORM_DELETED_AS_PUBLISHED = """{
  "specversion": "1.0",
  "id": "018e197c-dfe2-70f8-9346-1a8e016f5fbb",
  "source": "akeneo-event-platform",
  "type": "com.akeneo.pim.v1.product.deleted",
  "subject": "0190fe8a-6213-76ce-8a9f-ba36a5ef555a",
  "datacontenttype": "application/json",
  "dataschema": "https://event.prd.sdk.akeneo.cloud/spec/com.akeneo.pim.v1.product.deleted.schema.json",
  "time": "2024-03-07T15:16:37Z",
  "data": {
    "product": {
      "uuid": "3444ec1b-058e-4208-9b6c-284f47a7aa17",
      "identifier": "my-product-identifier"
    }
    "author": {
      "identifier": "b238e9f7-fcec-45bd-9431-d43cd624b244",
      "type": "api"
    }
  }
}"""

# Our fix: the one missing comma, after the `product` object.
_MISSING_COMMA = ('    }\n    "author"', '    },\n    "author"')
EVENT_PLATFORM_UPDATED = EVENT_PLATFORM_UPDATED_AS_PUBLISHED.replace(*_MISSING_COMMA)
EVENT_PLATFORM_DELETED = EVENT_PLATFORM_DELETED_AS_PUBLISHED.replace(*_MISSING_COMMA)

# --- the legacy Events API ------------------------------------------------------------------------
# Headers: https://api.akeneo.com/events-documentation/subscription.html
# (content/events-api/subscription.md, "Request header"): JSON, "X-Akeneo-Request-Signature: The
# signature of the payload", "X-Akeneo-Request-Timestamp: The time at which the request was sent
# (unix timestamp in seconds)". The User-Agent is the one in the page's log sample.
REQUEST_SIGNATURE = "X-Akeneo-Request-Signature"
REQUEST_TIMESTAMP = "X-Akeneo-Request-Timestamp"
LEGACY_USER_AGENT = "GuzzleHttp/6.5.5 curl/7.64.0 PHP/7.4.16"

# https://api.akeneo.com/events-documentation/security.html (content/events-api/security.md): the
# signed payload is "<timestamp>.<body>", HMAC-SHA256 with the secret, hex. The page's PHP example
# gives a secret, a timestamp and a signature, but elides the body (`{"events":[{"action":
# "product.created", ...}]}`), so its signature cannot be checked against anything.
SECURITY_EXAMPLE_SECRET = "3ha6eonoa9icsckw8kccos084w0c0000g08g40oo4kww0gc8w4"
SECURITY_EXAMPLE_TIMESTAMP = "1602565368"
SECURITY_EXAMPLE_SIGNATURE = "d4582dd13a7b654c212d70b4c705e0ab0c0e6eb7f6524080f4d39121f88e6061"

# https://api.akeneo.com/events-documentation/limits-and-scalability.html
# (content/events-api/limits-and-scalability.md): "up to 10 events" per request, "a timeout of 0.5
# seconds", 4000 requests an hour. And no retry: "If the connector is unreachable or returns an
# error to an event request, the PIM will not try to re-send it" (content/getting-started/
# events-api-best-practices-5x/welcome.md).
LEGACY_MAX_EVENTS = 10
LEGACY_TIMEOUT_SECONDS = 0.5

# https://api.akeneo.com/events-reference/events-reference-serenity/products.html
# (content/events-reference/events-reference-serenity/products.md, "Product updated" and "Product
# removed").
LEGACY_PRODUCT_UPDATED = """{
    "events": [
        {
            "action": "product.updated",
            "event_id": "c306e088-fb76-479c-bbc0-18fef19da75d",
            "event_datetime": "2020-10-20T09:13:59+00:00",
            "author": "peter",
            "author_type": "ui",
            "pim_source": "https://demo.akeneo.com",
            "data": {
                "resource": {
                    "uuid":"1fd20ad8-ef95-49d7-a581-fb9f8ac0c5ad",
                    "identifier": "1111111304",
                    "family": "accessories",
                    "parent": null,
                    "groups": [],
                    "categories": [
                        "master_accessories_sunglasses",
                        "supplier_zaro"
                    ],
                    "enabled": true,
                    "values": {
                        "collection": [
                            {
                                "locale": null,
                                "scope": null,
                                "data": [
                                    "winter_2020"
                                ]
                            }
                        ],
                        "image": [
                            {
                                "locale": null,
                                "scope": null,
                                "data": "9/9/c/c/99cc83f105199c667505cfa8ec1458c8be4f0814_sunglasses.jpg",
                                "_links": {
                                    "download": {
                                        "href": "http://demo.akeneo.com/api/rest/v1/media-files/9/9/c/c/99cc83f105199c667505cfa8ec1458c8be4f0814_sunglasses.jpg/download"
                                    }
                                }
                            }
                        ],
                        "ean": [
                            {
                                "locale": null,
                                "scope": null,
                                "data": "1234567890316"
                            }
                        ],
                        "name": [
                            {
                                "locale": null,
                                "scope": null,
                                "data": "Sunglasses"
                            }
                        ],
                        "weight": [
                            {
                                "locale": null,
                                "scope": null,
                                "data": {
                                    "amount": "800.0000",
                                    "unit": "GRAM",
                                    "symbol": "g"
                                }
                            }
                        ],
                        "description": [
                            {
                                "locale": "en_US",
                                "scope": "ecommerce",
                                "data": "<p>Brown and gold sunglasses</p>"
                            }
                        ]
                    },
                    "created": "2020-10-20T08:30:28+00:00",
                    "updated": "2020-10-20T09:13:59+00:00",
                    "associations": {
                        "PACK": {
                            "groups": [],
                            "products": [],
                            "product_models": []
                        },
                        "SUBSTITUTION": {
                            "groups": [],
                            "products": [],
                            "product_models": []
                        },
                        "UPSELL": {
                            "groups": [],
                            "products": [],
                            "product_models": []
                        },
                        "X_SELL": {
                            "groups": [],
                            "products": [],
                            "product_models": []
                        }
                    },
                    "quantified_associations": [],
                    "metadata": {
                        "workflow_status": "working_copy"
                    }
                }
            }
        }
    ]
}"""

LEGACY_PRODUCT_REMOVED = """{
    "events": [
        {
            "action": "product.removed",
            "event_id": "c306e088-fb76-479c-bbc0-18fef19da75d",
            "event_datetime": "2020-10-20T09:13:59+00:00",
            "author": "peter",
            "author_type": "ui",
            "pim_source": "https://demo.akeneo.com",
            "data": {
                "resource": {
                    "identifier": "1111111304",
                    "uuid":"cb02315b-a8f6-4580-beee-7624c02c1384"
                }
            }
        }
    ]
}"""

# The ten events of one request in the log sample of content/events-api/subscription.md ("INFO The
# API event request was sent."), as the log shows them: with `product_identifier` instead of the
# product data, which the request itself carries.
LOG_SAMPLE_EVENTS = [
    {
        "action": "product.updated",
        "event_id": "ab1865b0-143d-4ad8-8b73-0c14844df032",
        "event_datetime": "2021-03-12T09:46:23+00:00",
        "author": "admin",
        "author_type": "ui",
        "product_identifier": "12312165",
    },
    {
        "action": "product.updated",
        "event_id": "cda38acc-253a-4d98-a1b7-e174add5b083",
        "event_datetime": "2021-03-12T09:46:23+00:00",
        "author": "admin",
        "author_type": "ui",
        "product_identifier": "1199244",
    },
    {
        "action": "product.updated",
        "event_id": "62896f91-17af-49d0-8707-99329a125f09",
        "event_datetime": "2021-03-12T09:46:23+00:00",
        "author": "admin",
        "author_type": "ui",
        "product_identifier": "17654811",
    },
    {
        "action": "product.updated",
        "event_id": "bf31fda4-9c55-42ad-ae49-22fc3f432db1",
        "event_datetime": "2021-03-12T09:46:23+00:00",
        "author": "admin",
        "author_type": "ui",
        "product_identifier": "10978316",
    },
    {
        "action": "product.updated",
        "event_id": "b9e4b245-cc9e-4393-a0b8-06b4412bf40d",
        "event_datetime": "2021-03-12T09:46:23+00:00",
        "author": "admin",
        "author_type": "ui",
        "product_identifier": "12822289",
    },
    {
        "action": "product.updated",
        "event_id": "e2840a00-2bf6-466e-ab15-27d4235096c2",
        "event_datetime": "2021-03-12T09:46:23+00:00",
        "author": "admin",
        "author_type": "ui",
        "product_identifier": "15620134",
    },
    {
        "action": "product.updated",
        "event_id": "78f0f73d-9c21-4ee4-8473-14e8e7a65e8a",
        "event_datetime": "2021-03-12T09:46:23+00:00",
        "author": "admin",
        "author_type": "ui",
        "product_identifier": "12226421",
    },
    {
        "action": "product.updated",
        "event_id": "ffc93c4f-4cd0-4e7c-a1b6-aefa14e5b7b2",
        "event_datetime": "2021-03-12T09:46:23+00:00",
        "author": "admin",
        "author_type": "ui",
        "product_identifier": "14600631",
    },
    {
        "action": "product.updated",
        "event_id": "d407100d-630c-4fb8-867d-965f70a6bb62",
        "event_datetime": "2021-03-12T09:46:23+00:00",
        "author": "admin",
        "author_type": "ui",
        "product_identifier": "18157852",
    },
    {
        "action": "product.updated",
        "event_id": "8bf064de-2d57-4d0f-910a-fd78af8a4a5c",
        "event_datetime": "2021-03-12T09:46:23+00:00",
        "author": "admin",
        "author_type": "ui",
        "product_identifier": "14532409",
    },
]


def search_after_page(origin: str, items: list[dict], *, last: bool = False) -> str:
    """The documented search_after page with `items` where it shows `...`, its links moved from
    demo.akeneo.com to `origin` (paths and queries as published); `last`: without `next`."""
    published = SEARCH_AFTER_PAGE_AS_PUBLISHED.replace("      ...\n", "")
    page = json.loads(published.replace(DOCUMENTED_ORIGIN, origin))
    page["_embedded"]["items"] = items
    if last:
        del page["_links"]["next"]
    return json.dumps(page)


def documented_product() -> dict:
    """The product of the documented `product.updated` event, in Akeneo's standard format."""
    return copy.deepcopy(json.loads(LEGACY_PRODUCT_UPDATED)["events"][0]["data"]["resource"])


def legacy_batch(count: int = LEGACY_MAX_EVENTS, *, extra_values: dict | None = None) -> dict:
    """A legacy request of `count` (≤ 10) `product.updated` events: the log sample's event ids,
    times and identifiers, each with the documented event's full product data (and `extra_values`
    added to its values: a bigger product)."""
    documented = json.loads(LEGACY_PRODUCT_UPDATED)["events"][0]
    events = []
    for logged in LOG_SAMPLE_EVENTS[:count]:
        event = copy.deepcopy(documented)
        event.update({key: logged[key] for key in ("event_id", "event_datetime", "author", "author_type")})
        resource = event["data"]["resource"]
        resource["identifier"] = logged["product_identifier"]
        resource["uuid"] = _uuid_for(logged["product_identifier"])
        resource["values"].update(copy.deepcopy(extra_values or {}))
        events.append(event)
    return {"events": events}


def rich_values(locales: int = 6, channels: int = 2, kilobytes: int = 4) -> dict:
    """Ours, not Akeneo's: values that make a product as big as a rich catalog's (a description
    and a long description of `kilobytes` each per locale and channel, about 100 KB with the
    defaults), in Akeneo's value format (content/concepts/products.md)."""
    paragraph = "<p>" + "Waxed canvas, brass rivets, a leather strap that ages well. " * 16 + "</p>"
    text = (paragraph * (kilobytes * 1024 // len(paragraph) + 1))[: kilobytes * 1024]
    codes = ["en_US", "de_DE", "fr_FR", "it_IT", "es_ES", "nl_NL"]
    values = {}
    for attribute in ("description", "long_description"):
        values[attribute] = [
            {"locale": locale, "scope": scope, "data": text}
            for locale in codes[:locales]
            for scope in ("ecommerce", "print", "mobile")[:channels]
        ]
    return values


def _uuid_for(identifier: str) -> str:
    """A stable uuid per identifier (the log sample names products by identifier only)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"akeneo-log-sample:{identifier}"))
