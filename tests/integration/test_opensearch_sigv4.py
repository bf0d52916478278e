"""OPENSEARCH_AUTH=sigv4: every request the OpenSearch sink sends is signed, and the signature is valid.

The sink's client (``make_client(endpoint, "sigv4")``, as the fetcher builds it)
talks to a recording HTTP server on loopback. Each captured request is checked
with a Signature Version 4 verifier written here from AWS's specification
(canonical request, string to sign, HMAC-SHA256 key derivation), independent of
the botocore signer the client uses: the signature must cover the method, the
path, the query, the signed headers and the exact body that was sent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from opensearchpy import Urllib3HttpConnection

from fanout.model.change import Change
from fanout.model.mapping import default_mappings
from fanout.sinks import Outcome
from fanout.sinks.opensearch import OpenSearchSink, make_client
from fanout.source.rows import RowState

ACCESS_KEY, SECRET_KEY, SESSION_TOKEN, REGION = (
    "AKIDFANOUTTEST",
    "fanout/test/secret+key",
    "session-token-1",
    "eu-west-1",
)
POSTS = default_mappings().get("posts")


class Recorder(BaseHTTPRequestHandler):
    captured: list[dict[str, Any]] = []

    def _record_and_answer(self, status: int, body: dict[str, Any] | None) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.captured.append(
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": self.rfile.read(length) if length else b"",
            }
        )
        payload = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's spelling
        self._record_and_answer(200, None)  # the index exists

    def do_GET(self) -> None:  # noqa: N802 - the write set's alias, then its index's tombstone lifetime (the sink's)
        answer = {"posts.g1": {"aliases": {"posts.write": {}}, "settings": {"index": {"gc_deletes": "1h"}}}}
        self._record_and_answer(200, answer)

    def do_PUT(self) -> None:  # noqa: N802 - the index template, then the write
        self._record_and_answer(201, {"_index": "posts", "_id": "1", "_version": 1, "result": "created"})

    def do_DELETE(self) -> None:  # noqa: N802
        self._record_and_answer(200, {"_index": "posts", "_id": "1", "_version": 2, "result": "deleted"})

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def signed_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    # The credentials Lambda gives a function: key, secret and session token in the environment.
    for name, value in {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_SESSION_TOKEN": SESSION_TOKEN,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    Recorder.captured = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", Recorder.captured
    finally:
        server.shutdown()
        server.server_close()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def verify_sigv4(request: dict[str, Any], secret_key: str, service: str) -> dict[str, str]:
    """Check a captured request's SigV4 signature from first principles; return the parsed Authorization fields."""
    headers = request["headers"]
    algorithm, _, fields = headers["authorization"].partition(" ")
    assert algorithm == "AWS4-HMAC-SHA256"
    parts = dict(item.strip().split("=", 1) for item in fields.split(","))
    access_key, date, region, signed_service, terminator = parts["Credential"].split("/")
    assert (signed_service, terminator) == (service, "aws4_request")
    signed = parts["SignedHeaders"].split(";")
    assert signed == sorted(signed) and {"host", "x-amz-date"} <= set(signed)

    payload_hash = hashlib.sha256(request["body"]).hexdigest()
    assert headers["x-amz-content-sha256"] == payload_hash  # the body that arrived is the body that was signed
    url = urlsplit(request["path"])
    query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
        for k, v in sorted(parse_qsl(url.query, keep_blank_values=True))
    )
    canonical_headers = "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in signed)
    canonical_request = "\n".join(
        [
            request["method"],
            quote(url.path or "/", safe="/-_.~"),
            query,
            canonical_headers,
            ";".join(signed),
            payload_hash,
        ]
    )
    amz_date = headers["x-amz-date"]
    assert amz_date.startswith(date)
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), date), region), service), "aws4_request")
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["Signature"], expected), "the signature does not match the request"
    return {"access_key": access_key, "region": region, "signed_headers": parts["SignedHeaders"]}


def test_every_request_of_the_opensearch_sink_carries_a_valid_sigv4_signature(
    signed_endpoint: tuple[str, list[dict[str, Any]]],
) -> None:
    endpoint, captured = signed_endpoint
    # Given the fetcher's OpenSearch client in sigv4 mode, and the sink over it
    sink = OpenSearchSink(make_client(endpoint, "sigv4"))
    change = Change("posts", (("id", 1),), "update", 1764240000000000, "req-sigv4")
    row = {"id": 1, "title": "signed — naïve café", "body": "b", "author": "a", "status": "draft", "updated_at": None}

    # When it writes a row and then deletes it
    assert sink.apply(POSTS, change, RowState(row, 1764240000000001)) is Outcome.WRITTEN
    assert sink.apply(POSTS, change, RowState(None, 1764240000000002)) is Outcome.DELETED

    # Then every request (the write set read, the tombstone template, the index's tombstone lifetime, write,
    # delete) was signed for es in the region, with the session token
    assert [r["method"] for r in captured] == ["GET", "PUT", "GET", "PUT", "DELETE"]
    for request in captured:
        auth = verify_sigv4(request, SECRET_KEY, "es")
        assert (auth["access_key"], auth["region"]) == (ACCESS_KEY, REGION)
        assert request["headers"]["x-amz-security-token"] == SESSION_TOKEN
        assert "x-amz-security-token" in auth["signed_headers"].split(";")
    assert json.loads(captured[3]["body"])["title"] == row["title"]


def test_the_verifier_rejects_a_request_altered_after_signing(
    signed_endpoint: tuple[str, list[dict[str, Any]]],
) -> None:
    # (so that the test above could fail: a changed body or path no longer matches its signature)
    endpoint, captured = signed_endpoint
    sink = OpenSearchSink(make_client(endpoint, "sigv4"))
    row = {"id": 1, "title": "t", "body": "b", "author": "a", "status": "draft", "updated_at": None}
    sink.apply(POSTS, Change("posts", (("id", 1),), "update", 1, "c"), RowState(row, 5))
    put = captured[-1]

    moved = {**put, "path": put["path"].replace("/1?", "/2?")}
    with pytest.raises(AssertionError, match="signature does not match"):
        verify_sigv4(moved, SECRET_KEY, "es")
    with pytest.raises(AssertionError):
        verify_sigv4({**put, "body": put["body"].replace(b'"t"', b'"x"')}, SECRET_KEY, "es")


def test_without_sigv4_nothing_is_signed(signed_endpoint: tuple[str, list[dict[str, Any]]]) -> None:
    endpoint, captured = signed_endpoint
    OpenSearchSink(make_client(endpoint, "none")).apply(
        POSTS, Change("posts", (("id", 1),), "delete", 1, "c"), RowState(None, 5)
    )

    assert captured and all("authorization" not in r["headers"] for r in captured)


def test_signed_or_not_the_client_talks_over_the_same_urllib3_connection(
    signed_endpoint: tuple[str, list[dict[str, Any]]],
) -> None:
    # (the signature is added on opensearch-py's urllib3 connection: no second HTTP stack, requests', in AWS only)
    endpoint, _ = signed_endpoint
    kinds = {
        type(connection)
        for auth in ("sigv4", "none")
        for connection in make_client(endpoint, auth).transport.connection_pool.connections
    }
    assert kinds == {Urllib3HttpConnection}
