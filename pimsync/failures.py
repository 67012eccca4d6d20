"""What each error class means for the person reading it: a plain reason, what to do, and whether a
Retry alone can help.

The one list of failures: the pipeline writes these reasons on events (the technical message stays
on the attempt), the event page shows the "what to do" line, the Retry confirmations say which
selected events a retry cannot help, and `docs/operations.md` carries the same table (a test keeps
them equal; `markdown_table()` prints it).

Error classes are exact (`pim_not_found`), or a status family (`aem_4xx` for any 4xx answer no
entry names exactly), looked up in that order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Failure:
    """One kind of failure: its error classes, the reason shown for it, what to do about it."""

    classes: tuple[str, ...]
    reason: str
    action: str
    # Whether pressing Retry, with nothing else done, can end differently.
    retry_helps: bool
    # The error's own message already names the product, rule or setting: it stays the event's reason.
    own_words: bool = False

    @property
    def label(self) -> str:
        """The reason with its statuses named ("5xx", "401/403"), for lists and the operations page."""
        return self.reason.replace("{status}", "/".join(c.rsplit("_", 1)[-1] for c in self.classes))

    def reason_for(self, error_class: str) -> str:
        """The reason with the answer's status filled in (`aem_409` → "409")."""
        status = error_class.rsplit("_", 1)[-1]
        return self.reason.replace("{status}", status if status.isdigit() else "?")


FAILURES = (
    # --- the PIM ---
    Failure(
        ("pim_not_found",),
        "The product is not in the PIM (not created there yet, or the asset's name gives a wrong product key)",
        "Create the product in the PIM, or rename the asset or correct the product key rule on the mapping page; "
        "then retry.",
        retry_helps=False,
        own_words=True,
    ),
    Failure(
        ("pim_credentials",),
        "Akeneo refused the Connection's credentials",
        "The reason names the settings to check (AKENEO_CLIENT_ID, AKENEO_SECRET, AKENEO_USERNAME, AKENEO_PASSWORD): "
        "correct them, restart pimsync, then retry.",
        retry_helps=False,
        own_words=True,
    ),
    Failure(
        ("pim_401", "pim_403"),
        "The PIM refused pimsync's credentials or permissions ({status})",
        "Check PIM_API_TOKEN and what the PIM lets that token read; then retry.",
        retry_helps=False,
    ),
    Failure(
        ("pim_429", "pim_paused", "akeneo_paused"),
        "The PIM asked pimsync to slow down (429)",
        "Nothing: pimsync waits as long as the PIM asked and tries again by itself.",
        retry_helps=True,
        own_words=True,
    ),
    Failure(
        ("pim_5xx",),
        "The PIM had a server error ({status})",
        "Nothing while it passes: pimsync tries again with growing pauses. If it lasts, check the PIM's health; "
        'the alert "The PIM is unreachable" says when it has lasted too long.',
        retry_helps=True,
    ),
    Failure(
        ("pim_timeout", "pim_unreachable"),
        "The PIM could not be reached or did not answer in time",
        "Nothing while it passes: pimsync tries again. If it lasts, check PIM_BASE_URL, the network between "
        "pimsync and the PIM, and the PIM itself.",
        retry_helps=True,
    ),
    Failure(
        ("pim_bad_response", "pim_too_large"),
        "The PIM answered with something pimsync cannot read (not a JSON object, nested too deeply, or over 10 MB)",
        "Check that PIM_BASE_URL points at the PIM's API (not a login page or a proxy's error page) and look at "
        "the product in the PIM; then retry.",
        retry_helps=False,
    ),
    Failure(
        ("pim_4xx",),
        "The PIM refused the request ({status})",
        "Look at the attempt's message below: it names the call. Usually a wrong product key or a setting that "
        "names something the PIM does not have; fix it, then retry.",
        retry_helps=False,
    ),
    # --- AEM ---
    Failure(
        ("aem_404",),
        "AEM has no asset with this id (deleted, or a wrong id in a backfill)",
        "Open the asset in AEM: if it was deleted, nothing is to be done; if a backfill registered a wrong id, "
        "correct the CSV and backfill again.",
        retry_helps=False,
    ),
    Failure(
        ("aem_401", "aem_403"),
        "AEM refused pimsync's credentials or permissions ({status})",
        "Check the technical account (ADOBE_CLIENT_ID, ADOBE_CLIENT_SECRET), its product profile in the Admin "
        "Console and its rights on the asset's folder; then retry.",
        retry_helps=False,
    ),
    Failure(
        ("aem_412",),
        "The asset kept changing in AEM while pimsync wrote it",
        "Nothing: pimsync tries again by itself. If it keeps happening, find the other process that writes this "
        "asset's metadata.",
        retry_helps=True,
    ),
    Failure(
        ("aem_429", "aem_paused"),
        "AEM asked pimsync to slow down (429)",
        "Nothing: pimsync waits as long as AEM asked and tries again by itself.",
        retry_helps=True,
        own_words=True,
    ),
    Failure(
        ("aem_5xx",),
        "AEM had a server error ({status})",
        "Nothing while it passes: pimsync tries again with growing pauses. If it lasts, check AEM's status in "
        'Cloud Manager; the alert "AEM is unreachable" says when it has lasted too long.',
        retry_helps=True,
    ),
    Failure(
        ("aem_timeout", "aem_unreachable"),
        "AEM could not be reached or did not answer in time",
        "Nothing while it passes: pimsync tries again. If it lasts, check AEM_AUTHOR_URL, the network between "
        "pimsync and AEM, and AEM itself.",
        retry_helps=True,
    ),
    Failure(
        ("aem_bad_response", "aem_too_large"),
        "AEM answered with something pimsync cannot read (not the asset's metadata, or over 10 MB)",
        "Check that AEM_AUTHOR_URL points at the author service (not a login page or a proxy's error page); "
        "then retry.",
        retry_helps=False,
    ),
    Failure(
        ("aem_4xx",),
        "AEM refused the metadata write ({status})",
        "Look at AEM's answer on the attempt below: it names the property or value AEM refused. Correct the "
        "mapping rule that writes it (or the metadata schema in AEM), then retry.",
        retry_helps=False,
    ),
    # --- Adobe IMS (the access token) ---
    Failure(
        ("ims_credentials",),
        "Adobe IMS refused pimsync's client credentials",
        "Check ADOBE_CLIENT_ID, ADOBE_CLIENT_SECRET and ADOBE_SCOPES against the project in the Adobe Developer "
        "Console, restart pimsync, then retry.",
        retry_helps=False,
        own_words=True,
    ),
    Failure(
        ("ims",),
        "Adobe IMS did not give pimsync an access token",
        "Nothing while it passes: pimsync tries again. If it lasts, check Adobe's status page and ADOBE_IMS_TOKEN_URL.",
        retry_helps=True,
    ),
    # --- pimsync's own side ---
    Failure(
        ("mapping",),
        "The mapping rules cannot be applied to this asset",
        "The reason names the rule or the product key pattern: correct it on the mapping page, then retry.",
        retry_helps=False,
        own_words=True,
    ),
    Failure(
        ("config",),
        "pimsync is not configured to do this",
        "The reason names the setting: correct it (see the overview's warnings and `manage.py check`), restart "
        "pimsync, then retry.",
        retry_helps=False,
        own_words=True,
    ),
    Failure(
        ("worker_stopped",),
        "The worker stopped while enriching this asset (killed, out of memory, a restart)",
        "If it happened once, nothing: the event is handed out again. If the event failed for it, see the worker "
        "log for what stopped it and fix that; then retry.",
        retry_helps=False,
        own_words=True,
    ),
)

_BY_CLASS = {error_class: failure for failure in FAILURES for error_class in failure.classes}
_STATUS = re.compile(r"^([a-z]+)_([1-5])\d\d$")


def lookup(error_class: str) -> Failure | None:
    """The failure an error class belongs to (None for an unknown class or none)."""
    if not error_class:
        return None
    if found := _BY_CLASS.get(error_class):
        return found
    if (match := _STATUS.match(error_class)) and (found := _BY_CLASS.get(f"{match[1]}_{match[2]}xx")):
        return found
    return _BY_CLASS.get(error_class.split("_", 1)[0])


def reason(error_class: str, message: str) -> str:
    """The reason an event shows: the plain reason of its error class, or the error's own message
    where that is already written for people (or the class is unknown)."""
    failure = lookup(error_class)
    if failure is None or failure.own_words:
        return message
    return failure.reason_for(error_class)


def retry_helps(error_class: str) -> bool:
    """Whether a Retry alone can change how an event with this error class ends."""
    failure = lookup(error_class)
    return failure is None or failure.retry_helps


def markdown_table() -> str:
    """The list as `docs/operations.md` shows it."""
    lines = ["| error class | what it means | what to do | does Retry help? |", "|---|---|---|---|"]
    for failure in FAILURES:
        classes = ", ".join(f"`{c}`" for c in failure.classes)
        helps = "yes" if failure.retry_helps else "no"
        lines.append(f"| {classes} | {failure.label} | {failure.action} | {helps} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # `python -m pimsync.failures` prints the table for docs/operations.md
    print(markdown_table(), end="")
