"""The registry client and the content store against a real CNCF registry on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import threading
from pathlib import Path

import pytest
from registry.registry_server import (
    PASSWORD,
    USER,
    CuttingProxy,
    RegistryServer,
    needs_registry,
)

import rtxpack
from rtxpack._exceptions import (
    BlobIntegrityError,
    InvalidReferenceError,
    RegistryAuthError,
    RegistryConnectionError,
    RegistryNotFoundError,
    RegistryProtocolError,
)
from rtxpack._registry.auth import Credentials, find_credentials, parse_challenge
from rtxpack._registry.client import RegistryClient, sha256_digest
from rtxpack._registry.reference import parse_reference
from rtxpack._registry.store import ContentStore

pytestmark = [needs_registry, pytest.mark.usefixtures("private_store_and_auth")]
NO_WAIT = {"sleep": lambda _s: None}


def blob(size: int, seed: int = 0) -> tuple[bytes, str]:
    data = (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]
    return data, sha256_digest(data)


def upload(client: RegistryClient, repo: str, data: bytes) -> str:
    digest = sha256_digest(data)
    client.upload_blob(repo, digest, len(data), lambda: io.BytesIO(data))
    return digest


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def oci_manifest(
    client: RegistryClient, repo: str, layers: list[tuple[str, int]], **extra: object
) -> bytes:
    """A minimal OCI artifact manifest (empty config) over blobs already in ``repo``."""
    empty_digest = upload(client, repo, b"{}")
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.test",
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": empty_digest,
                "size": 2,
            },
            "layers": [
                {"mediaType": "application/octet-stream", "digest": d, "size": n} for d, n in layers
            ],
            **extra,
        }
    ).encode()


# -- references ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("oci://reg.example.com/team/model:1.0", ("reg.example.com", None, "team/model", "1.0")),
        ("oci://127.0.0.1:5000/m", ("127.0.0.1", 5000, "m", "latest")),
        ("oci://[::1]:5000/a/b-c_d.e:v1", ("::1", 5000, "a/b-c_d.e", "v1")),
        ("oci://localhost/a__b/c:T_1.x-y", ("localhost", None, "a__b/c", "T_1.x-y")),
    ],
)
def test_references_parse_into_host_port_repository_tag(
    text: str, expected: tuple[object, ...]
) -> None:
    ref = parse_reference(text)
    assert (ref.host, ref.port, ref.repository, ref.tag) == expected
    assert ref.digest is None
    assert str(parse_reference(str(ref))) == str(ref)


def test_a_digest_reference_pins_the_manifest() -> None:
    digest = "sha256:" + "ab" * 32
    ref = parse_reference(f"oci://h:1/r@{digest}")
    assert (ref.tag, ref.digest, ref.ref) == (None, digest, digest)
    both = parse_reference(f"oci://h/r:t@{digest}")
    assert (both.tag, both.ref) == ("t", digest)


@pytest.mark.parametrize(
    "text",
    [
        "docker://h/r:t",
        "oci://h",
        "oci:///r",
        "oci://h/",
        "oci://h/R",  # uppercase repository
        "oci://h/r:",
        "oci://h/r:-t",
        "oci://h/r:" + "t" * 129,
        "oci://h/r@sha256:abc",
        "oci://h/r@md5:" + "a" * 32,
        "oci://h:0/r",
        "oci://h:65536/r",
        "oci://h:5x/r",
        "oci://h_x/r",
        "oci://[::1/r",
        "oci://[1.2.3.4]/r",
        "oci://h/a//b",
        "oci://h/a/../b",
        "oci://h/r\x1b[31m",
        "oci://h/r\u00e9",
        "oci://h/" + "a" * 256,
        "oci://h/" + "a/" * 600 + "a",
        "oci://user:pw@h/r",
    ],
)
def test_malformed_references_are_refused(text: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        parse_reference(text)
    assert isinstance(info.value, rtxpack.InvalidArgumentError)
    assert "oci://HOST" in str(info.value)
    assert "\x1b" not in str(info.value) or "\\x1b" in str(info.value)


# -- auth parsing ----------------------------------------------------------------------------


def test_challenges_parse_quoted_and_bare_parameters() -> None:
    found = parse_challenge(
        'Bearer realm="https://auth.example.com/token",service=reg,scope="repository:a/b:pull,push"'
    )
    assert found is not None
    assert found.scheme == "bearer"
    assert found.params == {
        "realm": "https://auth.example.com/token",
        "service": "reg",
        "scope": "repository:a/b:pull,push",
    }
    assert parse_challenge('Basic realm="x"') is not None
    assert parse_challenge("Negotiate abc") is None
    assert parse_challenge(None) is None
    assert parse_challenge("Bearer " + "a" * 10000) is None


def test_credentials_come_from_docker_config_and_env_and_never_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.json"
    encoded = base64.b64encode(b"alice:pa55:word").decode()
    config.write_text(json.dumps({"auths": {"https://reg.example.com:5000": {"auth": encoded}}}))
    monkeypatch.setenv("RTXPACK_REGISTRY_AUTH_FILE", str(config))
    found = find_credentials("reg.example.com:5000")
    assert found is not None
    assert (found.username, found.password) == ("alice", "pa55:word")
    assert "pa55" not in repr(found)
    assert find_credentials("other.example.com") is None
    monkeypatch.setenv("RTXPACK_REGISTRY_USERNAME", "bob")
    monkeypatch.setenv("RTXPACK_REGISTRY_PASSWORD", "envpw")
    env = find_credentials("other.example.com")
    assert env is not None
    assert (env.username, env.password) == ("bob", "envpw")


@pytest.mark.parametrize(
    "content",
    [b"{not json", json.dumps({"auths": {"h": {"auth": "!!notbase64"}}}).encode(), b" " * 2**21],
)
def test_a_broken_auth_file_is_an_auth_error_without_its_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes
) -> None:
    config = tmp_path / "auth.json"
    config.write_bytes(content)
    monkeypatch.setenv("RTXPACK_REGISTRY_AUTH_FILE", str(config))
    with pytest.raises(RegistryAuthError) as info:
        find_credentials("h")
    assert "notbase64" not in str(info.value)


# -- blobs and manifests against the real registry ---------------------------------------------


@pytest.mark.parametrize("kind", ["anonymous", "basic+tls", "token", "tls"])
def test_blobs_go_up_and_come_back_with_every_kind_of_access(tmp_path: Path, kind: str) -> None:
    server = RegistryServer(
        tmp_path / "reg",
        auth={"basic+tls": "htpasswd", "token": "token"}.get(kind),
        tls=kind in ("basic+tls", "tls"),
    ).start()
    try:
        client = RegistryClient(
            server.registry, ca_file=server.ca_file, credentials=Credentials(USER, PASSWORD)
        )
        data, digest = blob(3_000_001)
        assert not client.blob_exists("team/a", digest)
        upload(client, "team/a", data)
        assert client.blob_exists("team/a", digest)
        assert client.mount_blob("team/b", digest, "team/a")
        store = ContentStore(tmp_path / "store")
        handle, downloaded = store.fetch(client, "team/b", digest, len(data))
        with handle:
            assert handle.read() == data
        assert downloaded
        again, downloaded = store.fetch(client, "team/b", digest, len(data))
        again.close()
        assert not downloaded  # the store had it
        manifest = oci_manifest(client, "team/b", [(digest, len(data))])
        mdigest = client.put_manifest("team/b", "v1", manifest, OCI_MANIFEST)
        got, media_type, got_digest = client.get_manifest("team/b", "v1", OCI_MANIFEST)
        assert (got, got_digest, media_type) == (manifest, mdigest, OCI_MANIFEST)
        by_digest, _, _ = client.get_manifest("team/b", mdigest, OCI_MANIFEST)
        assert by_digest == manifest
    finally:
        server.close()


def test_the_wrong_password_ends_in_an_auth_error_that_does_not_show_it(
    basic_registry: RegistryServer,
) -> None:
    client = RegistryClient(
        basic_registry.registry,
        ca_file=basic_registry.ca_file,
        credentials=Credentials(USER, "wrong-secret-xyz"),
    )
    mark = basic_registry.log_mark()
    with pytest.raises(RegistryAuthError) as info:
        client.blob_exists("a", blob(10)[1])
    assert "wrong-secret-xyz" not in str(info.value)
    heads = [r for r in basic_registry.requests(mark) if r[0] == "HEAD"]
    assert len(heads) == 2  # asked once, answered once, then gave up


def test_no_credentials_says_how_to_give_them(basic_registry: RegistryServer) -> None:
    client = RegistryClient(basic_registry.registry, ca_file=basic_registry.ca_file)
    with pytest.raises(RegistryAuthError, match="RTXPACK_REGISTRY_USERNAME"):
        client.blob_exists("a", blob(10)[1])


def test_credentials_from_the_environment_reach_the_registry(
    basic_registry: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RTXPACK_REGISTRY_USERNAME", USER)
    monkeypatch.setenv("RTXPACK_REGISTRY_PASSWORD", PASSWORD)
    client = RegistryClient(basic_registry.registry, ca_file=basic_registry.ca_file)
    assert not client.blob_exists("a", blob(10)[1])


def test_a_token_service_whose_tokens_the_registry_refuses_is_a_bounded_401_loop(
    token_registry: RegistryServer,
) -> None:
    assert token_registry.tokens is not None
    token_registry.tokens.broken = True
    client = RegistryClient(token_registry.registry, credentials=Credentials(USER, PASSWORD))
    with pytest.raises(RegistryAuthError, match="refused the credentials"):
        client.get_manifest("a", "v1", "application/json")
    assert token_registry.tokens.issued == 1


def test_tls_without_the_ca_is_refused_not_downgraded(tls_registry: RegistryServer) -> None:
    client = RegistryClient(tls_registry.registry, **NO_WAIT)  # type: ignore[arg-type]
    with pytest.raises(RegistryConnectionError, match="CA file"):
        client.blob_exists("a", blob(10)[1])


def test_plain_http_is_refused_for_a_host_that_is_not_loopback() -> None:
    client = RegistryClient("registry.invalid:5000")
    with pytest.raises(RegistryProtocolError, match="not HTTPS"):
        client._checked_url("http://registry.invalid:5000/v2/")


def test_a_blob_with_wrong_bytes_is_refused_and_not_kept(
    registry: RegistryServer, tmp_path: Path
) -> None:
    client = RegistryClient(registry.registry)
    data, digest = blob(200_000)
    upload(client, "a", data)
    stored = registry.blob_file(digest)
    stored.write_bytes(b"X" + data[1:])  # same size, other bytes
    store = ContentStore(tmp_path / "store")
    with pytest.raises(BlobIntegrityError, match="digest"):
        store.fetch(client, "a", digest, len(data))
    report = store.report()
    assert (report.blobs, report.partial_files) == (0, 0)


@pytest.mark.parametrize("claimed", [10, 2**40])
def test_a_descriptor_size_that_is_not_the_blob_size_is_refused_before_download(
    registry: RegistryServer, tmp_path: Path, claimed: int
) -> None:
    client = RegistryClient(registry.registry)
    data, digest = blob(300_000)
    upload(client, "a", data)
    mark = registry.log_mark()
    store = ContentStore(tmp_path / "store")
    with pytest.raises(BlobIntegrityError, match="descriptor says"):
        store.fetch(client, "a", digest, claimed)
    assert store.report().blobs == 0
    # the connection was dropped before the body was read: far fewer bytes than the blob
    assert sum(r[3] for r in registry.requests(mark)) <= len(data)


def test_a_missing_blob_is_not_found(registry: RegistryServer, tmp_path: Path) -> None:
    client = RegistryClient(registry.registry)
    with pytest.raises(RegistryNotFoundError, match="blob"):
        ContentStore(tmp_path / "s").fetch(client, "a", blob(5)[1], 5)
    assert ContentStore(tmp_path / "s").report().partial_files == 0


def test_an_oversized_manifest_is_refused(
    registry: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = RegistryClient(registry.registry)
    big = oci_manifest(client, "a", [], annotations={"x": "a" * 5000})
    client.put_manifest("a", "big", big, OCI_MANIFEST)
    monkeypatch.setattr("rtxpack._constants.REGISTRY_MAX_MANIFEST_BYTES", 4096)
    with pytest.raises(RegistryProtocolError, match="at most 4096"):
        client.get_manifest("a", "big", OCI_MANIFEST)


def test_a_dropped_download_resumes_with_a_range_request(
    registry: RegistryServer, tmp_path: Path
) -> None:
    client = RegistryClient(registry.registry)
    data, digest = blob(4_000_000, seed=3)
    upload(client, "a", data)
    proxy = CuttingProxy(registry.port, cut_after=1_500_000)
    try:
        mark = registry.log_mark()
        via_proxy = RegistryClient(proxy.registry, **NO_WAIT)  # type: ignore[arg-type]
        handle, _ = ContentStore(tmp_path / "s").fetch(via_proxy, "a", digest, len(data))
        with handle:
            assert handle.read() == data
        statuses = [r[2] for r in registry.requests(mark) if r[0] == "GET"]
        assert 206 in statuses
    finally:
        proxy.close()


def test_an_interrupted_download_kept_in_the_store_resumes_next_time(
    registry: RegistryServer, tmp_path: Path
) -> None:
    client = RegistryClient(registry.registry)
    data, digest = blob(2_000_000, seed=4)
    upload(client, "a", data)
    store = ContentStore(tmp_path / "s")
    store._dirs()
    (store.root / "incoming" / f"{digest[7:]}.partial").write_bytes(data[:1_200_000])
    mark = registry.log_mark()
    handle, _ = store.fetch(client, "a", digest, len(data))
    with handle:
        assert handle.read() == data
    assert registry.bytes_sent(mark) == len(data) - 1_200_000


def test_a_registry_that_stops_mid_download_ends_in_a_connection_error(
    registry: RegistryServer, tmp_path: Path
) -> None:
    client = RegistryClient(registry.registry, **NO_WAIT)  # type: ignore[arg-type]
    data, digest = blob(64_000_000, seed=5)
    upload(client, "a", data)

    class StopOnFirstWrite(io.BytesIO):
        def write(self, chunk: bytes) -> int:  # type: ignore[override]
            if registry._proc is not None:
                registry.stop()
            return super().write(chunk)

    out = StopOnFirstWrite()
    with pytest.raises(RegistryConnectionError):
        client.fetch_blob("a", digest, len(data), out)
    assert len(out.getvalue()) < len(data)


def test_concurrent_pulls_of_one_blob_download_it_once(
    registry: RegistryServer, tmp_path: Path
) -> None:
    client = RegistryClient(registry.registry)
    data, digest = blob(8_000_000, seed=6)
    upload(client, "a", data)
    mark = registry.log_mark()
    results: list[bool] = []

    def pull() -> None:
        handle, downloaded = ContentStore(tmp_path / "s").fetch(
            RegistryClient(registry.registry), "a", digest, len(data)
        )
        with handle:
            assert hashlib.sha256(handle.read()).hexdigest() == digest[7:]
        results.append(downloaded)

    threads = [threading.Thread(target=pull) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    assert registry.bytes_sent(mark) == len(data)


def test_the_store_reports_and_prunes(registry: RegistryServer, tmp_path: Path) -> None:
    client = RegistryClient(registry.registry)
    store = ContentStore(tmp_path / "s")
    for seed in range(3):
        data, digest = blob(100_000 + seed, seed=10 + seed)
        upload(client, "a", data)
        store.fetch(client, "a", digest, len(data))[0].close()
    report = store.report()
    assert (report.blobs, report.blob_bytes) == (3, 300_003)
    old = store.path(sha256_digest(blob(100_000, seed=10)[0]))
    os.utime(old, (1, 1))
    assert store.prune(older_than_s=3600).removed == 1
    assert store.report().blobs == 2
    result = store.prune()
    assert (result.removed, result.removed_bytes) == (2, 200_003)
    assert store.report().blobs == 0


class _Redirector:
    """An HTTP server on 127.0.0.1 that answers every request with a 307 to ``target + path``
    (``target`` None: to itself, a loop), recording the Authorization headers it was sent."""

    def __init__(self, target: str | None) -> None:
        import http.server

        seen = self.authorizations = []  # type: list[str | None]
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                seen.append(self.headers.get("Authorization"))
                base = outer.target or f"http://127.0.0.1:{outer.port}"
                self.send_response(307)
                self.send_header("Location", base + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.target = target
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_blob_downloads_follow_redirects_without_the_registry_credentials(
    registry: RegistryServer,
) -> None:
    data, digest = blob(500_000, seed=7)
    upload(RegistryClient(registry.registry), "a", data)
    storage = _Redirector(f"http://{registry.registry}")  # another host, as object storage is
    front = _Redirector(f"http://127.0.0.1:{storage.port}")  # the registry the client talks to
    try:
        client = RegistryClient(f"127.0.0.1:{front.port}", credentials=Credentials(USER, PASSWORD))
        client._basic = Credentials(USER, PASSWORD).basic_header()  # as after a Basic challenge
        out = io.BytesIO()
        client.fetch_blob("a", digest, len(data), out)
        assert out.getvalue() == data
        assert front.authorizations[-1] == client._basic  # the registry gets them ...
        assert storage.authorizations == [None]  # ... the host it redirects to does not
    finally:
        front.close()
        storage.close()


def test_a_redirect_loop_ends_in_a_protocol_error() -> None:
    loop = _Redirector(None)
    try:
        client = RegistryClient(f"127.0.0.1:{loop.port}", **NO_WAIT)  # type: ignore[arg-type]
        with pytest.raises(RegistryProtocolError, match="redirected"):
            client.fetch_blob("a", blob(10)[1], 10, io.BytesIO())
        assert len(loop.authorizations) <= 1 + 1 + 5  # the TLS probe fails before HTTP
    finally:
        loop.close()


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf")])
def test_prune_refuses_an_age_that_is_not_a_number_of_seconds(tmp_path: Path, bad: float) -> None:
    store = ContentStore(tmp_path / "s")
    with pytest.raises(rtxpack.InvalidArgumentError):
        store.prune(older_than_s=bad)


def test_an_interrupted_download_whose_kept_part_is_damaged_starts_over(
    registry: RegistryServer, tmp_path: Path
) -> None:
    # the .partial file is not fsync'd either: after a crash it can hold zeros
    client = RegistryClient(registry.registry)
    data, digest = blob(2_000_000, seed=6)
    upload(client, "a", data)
    store = ContentStore(tmp_path / "s")
    store._dirs()
    (store.root / "incoming" / f"{digest[7:]}.partial").write_bytes(bytes(1_200_000))
    mark = registry.log_mark()
    handle, fresh = store.fetch(client, "a", digest, len(data))
    with handle:
        assert handle.read() == data
    assert fresh
    assert registry.bytes_sent(mark) == len(data) + len(data) - 1_200_000
    assert store.report().partial_files == 0


def test_a_fresh_download_that_fails_its_digest_is_not_retried_from_the_start(
    registry: RegistryServer, tmp_path: Path
) -> None:
    client = RegistryClient(registry.registry)
    data, digest = blob(1_000_000, seed=7)
    upload(client, "a", data)
    blob_file = registry.blob_file(digest)
    damaged = bytearray(blob_file.read_bytes())
    damaged[10] ^= 0xFF
    blob_file.write_bytes(bytes(damaged))
    store = ContentStore(tmp_path / "s")
    mark = registry.log_mark()
    with pytest.raises(BlobIntegrityError):
        store.fetch(client, "a", digest, len(data))
    assert len([r for r in registry.requests(mark) if r[0] == "GET"]) == 1
    assert store.report().partial_files == 0


def test_a_blob_body_is_read_into_reused_buffers_not_through_read(
    registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the download loop's speed depends on it (docs/performance.md): urllib3's read(amt) makes a
    # new bytes object per chunk; the body is read into the sink's buffers instead
    import urllib3.response

    client = RegistryClient(registry.registry)
    data, digest = blob(5_000_000, seed=8)
    upload(client, "a", data)
    real_read = urllib3.response.HTTPResponse.read
    body_reads = []

    def counting_read(self: urllib3.response.HTTPResponse, amt: int | None = None, **kw: object):  # type: ignore[no-untyped-def]
        if amt is not None:
            body_reads.append(amt)
        return real_read(self, amt, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(urllib3.response.HTTPResponse, "read", counting_read)
    handle, _ = ContentStore(tmp_path / "s").fetch(client, "a", digest, len(data))
    with handle:
        assert handle.read() == data
    assert body_reads == []
