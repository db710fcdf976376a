"""Fixtures: real registries on 127.0.0.1, and a private content store and auth setup per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_server import BINARY, RegistryServer

if BINARY is None:  # pragma: no cover - CI installs it (.ci/run)
    pytest.skip(
        "docker-registry is not installed (apt-get install docker-registry)",
        allow_module_level=True,
    )


@pytest.fixture(autouse=True)
def private_store_and_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test has its own content store and sees no credentials but those it sets."""
    store = tmp_path / "cache"
    monkeypatch.setenv("RTXPACK_CACHE_DIR", str(store))
    monkeypatch.setenv("RTXPACK_REGISTRY_AUTH_FILE", str(tmp_path / "no-auth-file.json"))
    monkeypatch.delenv("RTXPACK_REGISTRY_USERNAME", raising=False)
    monkeypatch.delenv("RTXPACK_REGISTRY_PASSWORD", raising=False)
    return store


def _serve(folder: Path, **kw: object) -> Iterator[RegistryServer]:
    server = RegistryServer(folder, **kw).start()  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """An anonymous plain-HTTP registry."""
    yield from _serve(tmp_path / "registry")


@pytest.fixture
def basic_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """A registry with htpasswd basic auth over TLS (self-signed CA)."""
    yield from _serve(tmp_path / "registry", auth="htpasswd", tls=True)


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """An anonymous registry over TLS with a CA generated for the test."""
    yield from _serve(tmp_path / "registry", tls=True)


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """A registry with bearer-token auth (a token service that checks basic credentials)."""
    yield from _serve(tmp_path / "registry", auth="token")
