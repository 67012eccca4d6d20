"""The outbound HTTP base against hostile servers on loopback: a total deadline per call, a cap on
the answer's size, and credentials that never reach a message."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import multiprocessing
import socket
import ssl
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pimsync.outbound import headers, http
from pimsync.outbound.redaction import redact_url
from standins.server import LoopbackServer, QuietHandler

TRICKLE_SECONDS = 60  # the old per-read timeout would wait this long
CALL_BOUND_SECONDS = 15  # a regression fails the test instead of hanging it


class RawServer:
    """A socket server on 127.0.0.1 that reads a request and then answers with `script(conn)`."""

    def __init__(self, script, tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.tls = tls
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            if self.tls:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (OSError, ssl.SSLError):
                    continue
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    piece = conn.recv(65536)
                    if not piece:
                        break
                    data += piece
                try:
                    self.script(conn, self.stop)
                except OSError:
                    pass  # the client hung up: what the deadline is for

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.listener.close()


def trickle(conn, stop, data: bytes) -> None:
    for byte in data:
        if stop.wait(0.2):
            return
        conn.sendall(bytes([byte]))


def trickled_headers(conn, stop) -> None:
    trickle(conn, stop, b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * (TRICKLE_SECONDS * 5) + b"\r\n\r\n")


def trickled_body(conn, stop) -> None:
    body = b"{" + b" " * (TRICKLE_SECONDS * 5) + b"}"
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
    trickle(conn, stop, body)


def trickled_body_until_close(conn, stop) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
    trickle(conn, stop, b" " * (TRICKLE_SECONDS * 5))


def huge_body_without_length(conn, stop) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
    chunk = b" " * 65536
    for _ in range(200):  # 12.5 MB
        if stop.is_set():
            return
        conn.sendall(chunk)


@pytest.fixture
def serve(settings):
    servers = []

    def start(script, tls: ssl.SSLContext | None = None) -> RawServer:
        server = RawServer(script, tls)
        servers.append(server)
        settings.PIM_BASE_URL = server.url
        return server

    yield start
    for server in servers:
        server.close()


def call_bounded(url: str, **kwargs):
    """Run `http.request` in a thread; return its result or exception, failing if it hangs."""
    outcome = {}

    def run():
        try:
            outcome["response"] = http.request("GET", url, error_class="pim", **kwargs)
        except Exception as exc:  # handed to the test to assert on
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(CALL_BOUND_SECONDS)
    assert not thread.is_alive(), f"the call was still running after {CALL_BOUND_SECONDS}s"
    outcome["seconds"] = time.monotonic() - started
    return outcome


@pytest.mark.parametrize("script", [trickled_headers, trickled_body, trickled_body_until_close])
def test_a_server_trickling_its_answer_times_out_at_the_total_deadline(serve, script):
    server = serve(script)
    outcome = call_bounded(server.url + "/products/SKU-1", timeout=1)
    error = outcome.get("error")
    assert isinstance(error, http.HttpError), outcome
    assert error.error_class == "pim_timeout"
    assert error.retryable
    assert "timed out after 1s" in error.message


def test_a_shorter_deadline_set_while_a_longer_one_runs_still_ends_its_call_in_time(serve, settings):
    """One watchdog thread keeps every call's deadline: a new, earlier one must wake it."""
    slow, other = serve(trickled_headers), serve(trickled_headers)  # each answers one call at a time
    settings.AEM_AUTHOR_URL = slow.url  # both origins allowed
    longer = threading.Thread(target=call_bounded, args=(slow.url + "/products/SKU-1",), kwargs={"timeout": 8})
    longer.start()
    time.sleep(0.3)  # the watchdog now sleeps until the longer call's deadline
    outcome = call_bounded(other.url + "/products/SKU-2", timeout=1)
    assert outcome["error"].error_class == "pim_timeout"
    assert outcome["seconds"] < 3
    longer.join()


def test_the_deadline_thread_outlives_a_failure_to_end_one_call(serve, settings, monkeypatch):
    stuck, server = serve(trickled_headers), serve(trickled_headers)  # each answers one call at a time
    settings.AEM_AUTHOR_URL = stuck.url  # both origins allowed
    shut, failed = http._shut, []

    def failing_once(sock) -> None:
        if not failed:
            failed.append(sock)
            raise RuntimeError("a socket that cannot be shut down")
        shut(sock)

    monkeypatch.setattr(http, "_shut", failing_once)
    first = threading.Thread(target=call_bounded, args=(stuck.url + "/products/SKU-1",), kwargs={"timeout": 1})
    first.start()  # not ended at its deadline (that failed): it runs until its server stops
    time.sleep(1.5)
    assert failed
    outcome = call_bounded(server.url + "/products/SKU-2", timeout=1)
    assert outcome["error"].error_class == "pim_timeout"
    assert outcome["seconds"] < 3


def _call_in_a_forked_child(url: str, answers) -> None:
    started = time.monotonic()
    try:
        http.request("GET", url, error_class="pim", timeout=1)
        answers.put(("answered", time.monotonic() - started))
    except http.HttpError as exc:
        answers.put((exc.error_class, time.monotonic() - started))


def test_a_forked_worker_process_keeps_its_calls_deadlines(serve):
    """django-q2 forks its workers: the parent's watchdog thread does not exist in the child."""
    server = serve(trickled_headers)
    call_bounded(server.url + "/products/SKU-1", timeout=1)  # this process's watchdog is running
    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    child = context.Process(target=_call_in_a_forked_child, args=(server.url + "/products/SKU-2", answers))
    child.start()
    try:
        error_class, seconds = answers.get(timeout=CALL_BOUND_SECONDS)
    finally:
        child.join(5)
    assert error_class == "pim_timeout" and seconds < 3


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1: (certificate file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_file), str(key_file)


@pytest.mark.parametrize("script", [trickled_headers, trickled_body_until_close])
def test_a_tls_server_trickling_its_answer_times_out_at_the_total_deadline(serve, certificate, script):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server = serve(script, tls=context)
    outcome = call_bounded(server.url + "/products/SKU-1", timeout=1, verify=certificate[0])
    error = outcome.get("error")
    assert isinstance(error, http.HttpError), outcome
    assert error.error_class == "pim_timeout"


def test_the_configured_timeout_is_the_default_total_deadline(serve, settings):
    settings.PIMSYNC_HTTP_TIMEOUT_SECONDS = 1
    server = serve(trickled_body)
    error = call_bounded(server.url + "/products/SKU-1").get("error")
    assert isinstance(error, http.HttpError) and error.error_class == "pim_timeout"


def test_a_caller_cannot_stretch_the_deadline_past_the_configured_timeout(serve, settings):
    settings.PIMSYNC_HTTP_TIMEOUT_SECONDS = 1
    server = serve(trickled_headers)
    error = call_bounded(server.url + "/products/SKU-1", timeout=30).get("error")
    assert isinstance(error, http.HttpError) and error.error_class == "pim_timeout"


def test_the_next_call_on_the_same_thread_works_after_a_timeout(serve, httpserver, settings):
    server = serve(trickled_body)
    with pytest.raises(http.HttpError):
        http.request("GET", server.url + "/products/SKU-1", error_class="pim", timeout=1)
    settings.PIM_BASE_URL = httpserver.url_for("").rstrip("/")
    httpserver.expect_request("/products/SKU-2").respond_with_json({"SKUID": "SKU-2"})
    response = http.request("GET", settings.PIM_BASE_URL + "/products/SKU-2", error_class="pim", timeout=1)
    assert response.json() == {"SKUID": "SKU-2"}


def test_an_answer_over_the_size_limit_is_refused(serve):
    server = serve(huge_body_without_length)
    error = call_bounded(server.url + "/products/SKU-1").get("error")
    assert isinstance(error, http.HttpError), error
    assert error.error_class == "pim_too_large"
    assert not error.retryable


def test_an_answer_declaring_a_size_over_the_limit_is_refused_before_reading(httpserver, settings):
    settings.PIM_BASE_URL = httpserver.url_for("").rstrip("/")
    httpserver.expect_request("/products/SKU-1").respond_with_data(b" " * (http.MAX_BODY_BYTES + 1))
    with pytest.raises(http.HttpError) as raised:
        http.request("GET", settings.PIM_BASE_URL + "/products/SKU-1", error_class="pim")
    assert raised.value.error_class == "pim_too_large"


def test_an_ordinary_answer_keeps_its_body_status_and_headers(httpserver, settings):
    settings.PIM_BASE_URL = httpserver.url_for("").rstrip("/")
    httpserver.expect_request("/products/SKU-1").respond_with_json({"SKUID": "SKU-1"}, headers={"ETag": '"7"'})
    response = http.request("GET", settings.PIM_BASE_URL + "/products/SKU-1", error_class="pim")
    assert response.json() == {"SKUID": "SKU-1"}
    assert response.headers["ETag"] == '"7"'


def test_an_error_answer_keeps_its_body_excerpt(httpserver, settings):
    settings.PIM_BASE_URL = httpserver.url_for("").rstrip("/")
    httpserver.expect_request("/products/SKU-1").respond_with_json({"error": "overloaded"}, status=503)
    with pytest.raises(http.HttpError) as raised:
        http.request("GET", settings.PIM_BASE_URL + "/products/SKU-1", error_class="pim")
    assert raised.value.error_class == "pim_503" and raised.value.retryable
    assert "overloaded" in raised.value.body


def test_credentials_in_the_base_url_are_sent_as_basic_auth_and_kept_out_of_messages(httpserver, settings):
    base = httpserver.url_for("").rstrip("/").replace("http://", "http://user:secret@")
    settings.PIM_BASE_URL = base
    httpserver.expect_request("/products/SKU-1").respond_with_json({"error": "down"}, status=500)
    with pytest.raises(http.HttpError) as raised:
        http.request("GET", base + "/products/SKU-1?api_key=k3y&lang=en", error_class="pim")
    [(request, _)] = httpserver.log
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"user:secret").decode()
    message = raised.value.message
    assert "secret" not in message and "k3y" not in message
    assert "http://***@localhost:" in message and "lang=en" in message


def test_the_allow_list_compares_origins_without_credentials(httpserver, settings):
    settings.PIM_BASE_URL = httpserver.url_for("").rstrip("/").replace("http://", "http://user:secret@")
    httpserver.expect_request("/products/SKU-1").respond_with_json({"SKUID": "SKU-1"})
    plain = httpserver.url_for("/products/SKU-1")
    assert http.request("GET", plain, error_class="pim").json() == {"SKUID": "SKU-1"}
    with pytest.raises(http.HttpError) as raised:
        http.request("GET", "http://user:secret@127.0.0.2:9/x", error_class="pim")
    assert raised.value.error_class == "config"
    assert "secret" not in raised.value.message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pass@pim.example.com/api", "https://***@pim.example.com/api"),
        ("https://pim.example.com/api?token=abc&page=2", "https://pim.example.com/api?token=***&page=2"),
        (
            "https://pim.example.com/api?X-Api-Key=abc&client_secret=s",
            "https://pim.example.com/api?X-Api-Key=***&client_secret=***",
        ),
        ("https://pim.example.com/api", "https://pim.example.com/api"),
    ],
)
def test_urls_in_messages_are_redacted(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "header, seconds",
    [
        ("120", 120.0),
        ("99999999999999999999", 24 * 3600.0),  # would overflow a datetime: capped at a day
        ("²", None),  # a digit to str.isdigit(), not to float()
        ("Fri, 27 Nov 2099 07:30:00 -0000", 24 * 3600.0),  # -0000: no zone said; read as UTC
        ("Fri, 27 Nov 2000 07:30:00 GMT", 0.0),
        ("soon", None),
    ],
)
def test_a_retry_after_from_a_server_is_seconds_capped_at_a_day_or_nothing(httpserver, settings, header, seconds):
    settings.PIM_BASE_URL = httpserver.url_for("").rstrip("/")
    httpserver.expect_request("/busy").respond_with_data("busy", status=503, headers={"Retry-After": header})
    with pytest.raises(http.HttpError) as raised:
        http.request("GET", httpserver.url_for("/busy"), error_class="pim")
    assert raised.value.retryable and raised.value.retry_after == seconds


class KeepAliveServer(LoopbackServer):
    """An HTTP/1.1 server on 127.0.0.1 that keeps connections open and records, for each request,
    the connection it came on and its path and headers."""

    def __init__(self) -> None:
        seen = self.seen = []

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                seen.append((self.client_address[1], self.path, dict(self.headers)))
                body = b'{"path": "%s"}' % self.path.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Set-Cookie", "session=abc; Path=/")
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)
        self.start()

    def connections(self) -> set[int]:
        return {port for port, _, _ in self.seen}


@pytest.fixture
def two_servers(settings):
    first, second = KeepAliveServer(), KeepAliveServer()
    settings.PIM_BASE_URL, settings.AEM_AUTHOR_URL = first.url, second.url
    http.session().close()  # connections from earlier tests are not this test's
    yield first, second
    http.session().close()
    first.close()
    second.close()


def test_calls_to_two_hosts_each_go_to_their_own_host_on_one_kept_connection(two_servers):
    first, second = two_servers
    for number in range(3):
        assert http.request("GET", f"{first.url}/products/{number}").json() == {"path": f"/products/{number}"}
        assert http.request("GET", f"{second.url}/assets/{number}").json() == {"path": f"/assets/{number}"}
    assert [path for _, path, _ in first.seen] == ["/products/0", "/products/1", "/products/2"]
    assert [path for _, path, _ in second.seen] == ["/assets/0", "/assets/1", "/assets/2"]
    assert len(first.connections()) == 1 and len(second.connections()) == 1


def test_a_cookie_an_answer_sets_is_neither_kept_nor_sent_back(two_servers):
    first, _ = two_servers
    response = http.request("GET", f"{first.url}/products/1")
    assert response.headers["Set-Cookie"] == "session=abc; Path=/"
    assert not response.cookies and not http.session().cookies
    http.request("GET", f"{first.url}/products/2")
    assert all("Cookie" not in sent for _, _, sent in first.seen)


def test_after_the_session_is_closed_the_next_call_opens_a_new_connection(two_servers):
    first, _ = two_servers
    http.request("GET", f"{first.url}/products/1")
    http.session().close()
    assert http.request("GET", f"{first.url}/products/2").json() == {"path": "/products/2"}
    assert len(first.connections()) == 2


def answer_with_headers(serve, lines: bytes):
    """An outbound call to a server answering `{}` after the status line and header `lines`."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + lines
    server = serve(lambda conn, stop: conn.sendall(answer + b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"))
    return http.request("GET", server.url + "/products/SKU-1")


def test_an_outbound_call_reads_its_answer_with_pimsyncs_header_reader(serve):
    response = answer_with_headers(serve, b"X-Trace: a\r\nX-Trace: b\r\n")
    assert isinstance(response.raw._original_response, headers.Response)
    assert headers.Response.begin.__globals__["parse_headers"] is headers.parse_headers
    assert response.json() == {}
    assert response.headers["X-Trace"] == "a, b"


def test_an_answer_with_a_folded_header_is_read_as_before(serve):
    response = answer_with_headers(serve, b"X-Folded: one\r\n two\r\n")
    assert response.json() == {}
    assert response.headers["X-Folded"] == "one two"  # urllib3 unfolds it
