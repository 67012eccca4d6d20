"""The built-in sandbox: Adobe IMS, the I/O Events key server and the AEM Assets Author API,
served by pimsync itself so the whole flow runs on a laptop with no Adobe account (it is on
with DEBUG and no `AEM_AUTHOR_URL`, or with `PIMSYNC_SANDBOX=1`; see `pimsync.settings`).

Only base URLs point here; the code that verifies signatures, fetches tokens and patches
metadata is the production code.
"""
