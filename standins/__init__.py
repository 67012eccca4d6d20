"""Loopback stand-ins for pimsync's peers (IMS, the I/O Events key server and Journaling API, AEM,
a REST PIM, Akeneo), written from their public documentation, independently of pimsync's clients.

One implementation of each contract, shared by the tests (mounted on pytest-httpserver), the
benchmark (`bench/`) and the failure drills (`drills/`, on a threaded server: `standins.peers`)."""
