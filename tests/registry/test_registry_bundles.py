"""push / pull / push_caches of real bundles against a real CNCF registry on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import MLP_SHAPES
from registry.registry_server import PASSWORD, USER, RegistryServer, needs_registry

import rtxpack
from rtxpack import Environment, Target
from rtxpack._exceptions import (
    BlobIntegrityError,
    CompatibilityError,
    InvalidArgumentError,
    RegistryAuthError,
    RegistryConnectionError,
    RegistryError,
    RegistryNotFoundError,
    RegistryProtocolError,
)
from rtxpack._registry import artifact as oci
from rtxpack._registry.client import RegistryClient, sha256_digest
from rtxpack._registry.pull import pull
from rtxpack._registry.push import push, push_caches
from rtxpack._registry.store import ContentStore

pytestmark = [needs_registry, pytest.mark.usefixtures("private_store_and_auth")]

TRT = "1.7.1.116"
GPUS = [
    ("NVIDIA GeForce RTX 4090", "8.9"),
    ("NVIDIA GeForce RTX 4080", "8.9"),
    ("NVIDIA GeForce RTX 3090", "8.6"),
    ("NVIDIA GeForce RTX 5090", "12.0"),
]


def env(gpu: str, cc: str, os_name: str = "linux", driver: str = "580.65") -> Environment:
    return Environment(TRT, gpu, cc, driver, os_name)


def target(gpu: str, cc: str, os_name: str = "linux") -> Target:
    return Target(
        trt_version=TRT, compute_capability=cc, driver_version="580.95", os=os_name, gpu_name=gpu
    )


def cache_blob(i: int, size: int = 300_000) -> bytes:
    return bytes([i % 251]) * 1000 + (b"cache-%d-" % i) * (size // 10)


@pytest.fixture
def fleet_bundle(tmp_path: Path, onnx_bundle: Path) -> Path:
    """The ONNX-built bundle (engine + source + samples) plus one cache per GPU in GPUS."""
    path = tmp_path / "fleet.rtxpack"
    shutil.copy(onnx_bundle, path)
    for i, (gpu, cc) in enumerate(GPUS):
        rtxpack.add_cache(path, cache_blob(i), env(gpu, cc))
    return path


def sections_of(path: Path) -> list[tuple[str, str]]:
    with rtxpack.open(path) as bundle:
        return [(s.kind, s.digest) for s in bundle.manifest.sections]


def test_push_then_pull_for_a_target_takes_the_engine_and_the_one_fitting_cache(
    registry: RegistryServer, fleet_bundle: Path, tmp_path: Path
) -> None:
    ref = registry.ref("fleet/mlp:1.0")
    pushed = push(fleet_bundle, ref)
    assert pushed.uploaded == len(sections_of(fleet_bundle)) + 1  # + the bundle manifest
    assert pushed.reference == f"{ref}@{pushed.digest}"

    mark = registry.log_mark()
    out = tmp_path / "device.rtxpack"
    result = pull(ref, out, target=target("NVIDIA GeForce RTX 3090", "8.6"))
    with rtxpack.open(out) as bundle:
        bundle.verify()
        assert [e.name for e in bundle.manifest.engines] == ["main"]
        assert [c.environment.gpu_name for c in bundle.manifest.caches] == [
            "NVIDIA GeForce RTX 3090"
        ]
        assert bundle.manifest.engines[0].source is None  # not asked for
        assert bundle.manifest.metadata == {"team": "vision"}
        engine_section = bundle.manifest.sections[bundle.manifest.engines[0].section]
    with rtxpack.open(fleet_bundle) as original:
        main = original.manifest.engines[0]
        assert engine_section.digest == original.manifest.sections[main.section].digest
        expected = original.manifest.sections[main.section].length + next(
            original.manifest.sections[c.section].length
            for c in original.manifest.caches
            if c.environment.gpu_name == "NVIDIA GeForce RTX 3090"
        )
    blob_gets = [r for r in registry.requests(mark) if r[0] == "GET" and "/blobs/" in r[1]]
    manifest_gets = [r for r in registry.requests(mark) if r[0] == "GET" and "/manifests/" in r[1]]
    config_size = oci.parse_manifest(_raw_manifest(registry, "fleet/mlp", "1.0"), "x").config.size
    assert sum(r[3] for r in blob_gets) == expected + config_size
    assert len(blob_gets) == 3 and len(manifest_gets) == 1
    assert (result.engines, len(result.caches), result.downloaded) == (("main",), 1, 2)


def _raw_manifest(registry: RegistryServer, repo: str, tag: str) -> bytes:
    client = RegistryClient(registry.registry)
    return client.get_manifest(repo, tag, oci.OCI_MANIFEST)[0]


def test_skopeo_reads_what_rtxpack_pushed(registry: RegistryServer, fleet_bundle: Path) -> None:
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        pytest.skip("skopeo is not installed (apt-get install skopeo)")
    pushed = push(fleet_bundle, registry.ref("fleet/mlp:skopeo"))
    raw = subprocess.run(
        [
            skopeo,
            "inspect",
            "--tls-verify=false",
            "--raw",
            f"docker://{registry.registry}/fleet/mlp:skopeo",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    assert sha256_digest(raw) == pushed.digest
    doc = json.loads(raw)
    assert doc["artifactType"] == oci.ARTIFACT_TYPE
    assert doc["config"]["mediaType"] == oci.CONFIG_MEDIA_TYPE
    kinds = [layer["annotations"][oci.SECTION_KIND] for layer in doc["layers"]]
    assert kinds == [k for k, _ in sections_of(fleet_bundle)]
    assert doc["layers"][0]["mediaType"] == "application/vnd.rtxpack.section.engine.v1"


def test_a_second_push_uploads_nothing_and_a_mount_links_across_repositories(
    registry: RegistryServer, fleet_bundle: Path
) -> None:
    first = push(fleet_bundle, registry.ref("team/a:v1"))
    again = push(fleet_bundle, registry.ref("team/a:v2"))
    assert (again.uploaded, again.skipped) == (0, first.uploaded)
    mark = registry.log_mark()
    mounted = push(fleet_bundle, registry.ref("team/b:v1"), mount_from="team/a")
    assert (mounted.uploaded, mounted.mounted) == (0, first.uploaded)
    assert not [r for r in registry.requests(mark) if r[0] == "PUT" and "/blobs/" in r[1]]


def test_pull_with_source_and_samples_gives_a_bundle_that_runs_its_samples(
    registry: RegistryServer, fleet_bundle: Path, tmp_path: Path
) -> None:
    ref = registry.ref("fleet/mlp:full")
    push(fleet_bundle, ref)
    out = tmp_path / "full.rtxpack"
    pull(ref, out, target=target(*GPUS[0]), source=True, samples=True)
    with rtxpack.open(out) as bundle:
        bundle.verify()
        info = bundle.manifest.engines[0]
        assert info.source is not None and info.samples is not None
    assert not list(tmp_path.glob(".*.tmp"))


def test_pull_without_a_fitting_engine_says_why_and_writes_nothing(
    registry: RegistryServer, fleet_bundle: Path, tmp_path: Path
) -> None:
    ref = registry.ref("fleet/mlp:x")
    push(fleet_bundle, ref)
    other_release = Target(trt_version="1.9.0.1", compute_capability="8.9", os="linux")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(CompatibilityError, match="no engine of") as info:
        pull(ref, out / "x.rtxpack", target=other_release)
    assert info.value.report is not None
    assert not list(out.iterdir())
    # asked for explicitly, it comes anyway (for example to rebuild it from its source)
    pull(ref, out / "x.rtxpack", target=other_release, engines="all", source=True)
    with rtxpack.open(out / "x.rtxpack") as bundle:
        bundle.verify()
        assert bundle.manifest.caches == ()  # none fits that target


def test_a_cache_only_update_moves_only_the_cache_and_devices_fetch_only_it(
    registry: RegistryServer, fleet_bundle: Path, tmp_path: Path
) -> None:
    ref = registry.ref("fleet/mlp:2.0")
    push(fleet_bundle, ref)
    device = tmp_path / "device.rtxpack"
    new_gpu = ("NVIDIA RTX 4000 Ada Generation", "8.9")
    pull(ref, device, target=target(*new_gpu))  # no cache fits yet: it runs, cold
    with rtxpack.open(device) as bundle:
        assert bundle.manifest.caches == ()

    # a machine of the new GPU class prewarmed a cache: publish only it
    warm = tmp_path / "warm.rtxpack"
    shutil.copy(fleet_bundle, warm)
    new_cache = cache_blob(99, size=500_000)
    rtxpack.add_cache(warm, new_cache, env(*new_gpu))
    mark = registry.log_mark()
    update = push_caches(warm, ref)
    assert len(update.caches_added) == 1
    uploads = [r for r in registry.requests(mark) if r[0] == "PUT" and "/blobs/" in r[1]]
    assert len(uploads) == 2  # the cache and the new bundle manifest
    with rtxpack.open(warm) as w:
        cache_len = w.manifest.sections[w.manifest.caches[-1].section].length
    assert update.uploaded_bytes < cache_len + 64 * 1024
    assert update.uploaded_bytes >= cache_len

    # the device already holds the engine (content store): it downloads only the cache
    mark = registry.log_mark()
    result = pull(ref, device, target=target(*new_gpu))
    blob_bytes = sum(r[3] for r in registry.requests(mark) if r[0] == "GET" and "/blobs/" in r[1])
    assert cache_len <= blob_bytes < cache_len + 64 * 1024
    assert result.reused >= 1
    with rtxpack.open(device) as bundle:
        bundle.verify()
        assert [c.environment.gpu_name for c in bundle.manifest.caches] == [new_gpu[0]]
        assert bundle.read_cache(bundle.manifest.caches[0].id) == new_cache

    # other devices still get their own cache from the updated tag
    other = tmp_path / "other.rtxpack"
    pull(ref, other, target=target(*GPUS[1]))
    with rtxpack.open(other) as bundle:
        assert [c.environment.gpu_name for c in bundle.manifest.caches] == [GPUS[1][0]]
    # nothing new: nothing moves
    assert push_caches(warm, ref).caches_added == ()


@pytest.mark.parametrize("engine_name", ["main", "other"])
def test_a_cache_for_an_engine_the_tag_does_not_hold_is_refused(
    registry: RegistryServer, fleet_bundle: Path, tmp_path: Path, onnx_mlp: Path, engine_name: str
) -> None:
    """A cache prewarmed on another build of the engine (a rebuilt bundle, another tag) would
    never fit a device of this tag: refused before any upload, instead of "already has every
    cache" and exit 0 while nothing moved."""
    ref = registry.ref("fleet/mlp:3.0")
    push(fleet_bundle, ref)
    rebuilt = tmp_path / "rebuilt.rtxpack"
    rtxpack.save(
        onnx_mlp, rebuilt, shapes=MLP_SHAPES, compute_capabilities=["8.6"], name=engine_name
    )
    rtxpack.add_cache(rebuilt, cache_blob(7), env("NVIDIA GeForce RTX 3080", "8.6"))
    before = _raw_manifest(registry, "fleet/mlp", "3.0")
    mark = registry.log_mark()
    expected = "is another build" if engine_name == "main" else "the tag has no engine 'other'"
    with pytest.raises(InvalidArgumentError, match=expected):
        push_caches(rebuilt, ref)
    assert not [r for r in registry.requests(mark) if r[0] in ("PUT", "POST", "PATCH")]
    assert _raw_manifest(registry, "fleet/mlp", "3.0") == before


def test_push_and_pull_through_basic_auth_over_tls(
    basic_registry: RegistryServer,
    fleet_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    auth = tmp_path / "config.json"
    import base64

    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    auth.write_text(json.dumps({"auths": {basic_registry.registry: {"auth": token}}}))
    monkeypatch.setenv("RTXPACK_REGISTRY_AUTH_FILE", str(auth))
    monkeypatch.setenv("RTXPACK_REGISTRY_CA_FILE", str(basic_registry.ca_file))
    ref = basic_registry.ref("secure/mlp:1")
    push(fleet_bundle, ref)
    out = tmp_path / "p.rtxpack"
    pull(ref, out, target=target(*GPUS[2]))
    rtxpack.open(out).verify()
    monkeypatch.setenv("RTXPACK_REGISTRY_AUTH_FILE", str(tmp_path / "none.json"))
    with pytest.raises(RegistryAuthError):
        pull(ref, tmp_path / "q.rtxpack", target=target(*GPUS[2]))
    assert not (tmp_path / "q.rtxpack").exists()


def test_push_and_pull_with_a_bearer_token(
    token_registry: RegistryServer,
    fleet_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RTXPACK_REGISTRY_USERNAME", USER)
    monkeypatch.setenv("RTXPACK_REGISTRY_PASSWORD", PASSWORD)
    ref = token_registry.ref("tok/mlp:1")
    push(fleet_bundle, ref)
    pull(ref, tmp_path / "t.rtxpack", target=target(*GPUS[0]))
    rtxpack.open(tmp_path / "t.rtxpack").verify()


def test_pull_by_digest_and_two_tags_share_the_stored_engine(
    registry: RegistryServer, fleet_bundle: Path, tmp_path: Path
) -> None:
    pushed = push(fleet_bundle, registry.ref("fleet/mlp:a"))
    push(fleet_bundle, registry.ref("fleet/mlp:b"), annotations={"purpose": "test"})
    first = pull(pushed.reference, tmp_path / "a.rtxpack", target=target(*GPUS[0]))
    second = pull(registry.ref("fleet/mlp:b"), tmp_path / "b.rtxpack", target=target(*GPUS[0]))
    assert first.downloaded == 2  # section blobs: the engine and its cache
    assert second.downloaded == 0  # same engine, cache and bundle manifest: all in the store
    assert sections_of(tmp_path / "a.rtxpack") == sections_of(tmp_path / "b.rtxpack")


# -- faults -------------------------------------------------------------------------------------


def test_a_corrupted_engine_blob_in_the_registry_fails_and_keeps_nothing(
    registry: RegistryServer, fleet_bundle: Path, tmp_path: Path
) -> None:
    ref = registry.ref("fleet/bad:1")
    push(fleet_bundle, ref)
    doc = json.loads(_raw_manifest(registry, "fleet/bad", "1"))
    engine_digest = doc["layers"][0]["digest"]
    blob = registry.blob_file(engine_digest)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    out = tmp_path / "out" / "b.rtxpack"
    out.parent.mkdir()
    with pytest.raises(BlobIntegrityError):
        pull(ref, out, target=target(*GPUS[0]))
    assert list(out.parent.iterdir()) == []
    store = ContentStore()
    assert not store.has(engine_digest, doc["layers"][0]["size"])
    assert store.report().partial_files == 0


def _put_manifest(registry: RegistryServer, repo: str, tag: str, doc: dict[str, object]) -> None:
    client = RegistryClient(registry.registry)
    client.put_manifest(repo, tag, json.dumps(doc).encode(), oci.OCI_MANIFEST)


@pytest.mark.parametrize("size", [2**36, 10])
def test_a_manifest_pointing_at_a_blob_of_another_size_is_refused(
    registry: RegistryServer, fleet_bundle: Path, tmp_path: Path, size: int
) -> None:
    push(fleet_bundle, registry.ref("fleet/huge:1"))
    doc = json.loads(_raw_manifest(registry, "fleet/huge", "1"))
    doc["layers"][0]["size"] = size
    _put_manifest(registry, "fleet/huge", "2", doc)
    with pytest.raises(RegistryProtocolError, match="does not describe section 0"):
        pull(registry.ref("fleet/huge:2"), tmp_path / "h.rtxpack", target=target(*GPUS[0]))
    assert not list(tmp_path.glob("h.rtxpack*"))


def test_a_manifest_pointing_at_a_missing_blob_is_not_found(
    registry: RegistryServer, fleet_bundle: Path, tmp_path: Path
) -> None:
    push(fleet_bundle, registry.ref("fleet/miss:1"))
    doc = json.loads(_raw_manifest(registry, "fleet/miss", "1"))
    blob = registry.blob_file(doc["layers"][0]["digest"])
    blob.unlink()  # the registry lost it
    with pytest.raises(RegistryNotFoundError):
        pull(registry.ref("fleet/miss:1"), tmp_path / "m.rtxpack", target=target(*GPUS[0]))
    assert not (tmp_path / "m.rtxpack").exists()


def test_an_artifact_that_is_not_a_bundle_is_refused(
    registry: RegistryServer, tmp_path: Path
) -> None:
    client = RegistryClient(registry.registry)
    empty = sha256_digest(b"{}")
    client.upload_blob("other/x", empty, 2, lambda: __import__("io").BytesIO(b"{}"))
    doc = {
        "schemaVersion": 2,
        "mediaType": oci.OCI_MANIFEST,
        "artifactType": "application/vnd.example.thing",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [],
    }
    _put_manifest(registry, "other/x", "1", doc)
    with pytest.raises(RegistryProtocolError, match="artifactType"):
        pull(registry.ref("other/x:1"), tmp_path / "o.rtxpack")


def test_a_registry_stopped_mid_pull_fails_cleanly(
    registry: RegistryServer, fleet_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = registry.ref("fleet/stop:1")
    push(fleet_bundle, ref)
    monkeypatch.setattr("rtxpack._constants.REGISTRY_BACKOFF_FIRST_S", 0.0)
    monkeypatch.setattr("rtxpack._constants.REGISTRY_BACKOFF_MAX_S", 0.0)
    original = ContentStore.fetch
    calls = []

    def stop_after_the_first_blob(self: ContentStore, *args: object) -> object:
        if calls:
            registry.stop()
        calls.append(1)
        return original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(ContentStore, "fetch", stop_after_the_first_blob)
    out = tmp_path / "s.rtxpack"
    with pytest.raises(RegistryConnectionError):
        pull(ref, out, target=target(*GPUS[0]))
    assert not list(tmp_path.glob("s.rtxpack*"))
    assert not list(tmp_path.glob(".s.rtxpack*"))


def test_every_registry_failure_is_an_rtxpack_error() -> None:
    for cls in (
        RegistryAuthError,
        RegistryConnectionError,
        RegistryNotFoundError,
        RegistryProtocolError,
        BlobIntegrityError,
    ):
        assert issubclass(cls, RegistryError)
        assert issubclass(cls, rtxpack.RtxpackError)
    assert issubclass(BlobIntegrityError, rtxpack.IntegrityError)


def test_load_from_a_registry_pulls_for_this_machine_and_reuses_the_pull(
    registry: RegistryServer, fleet_bundle: Path
) -> None:
    torch = pytest.importorskip("torch")
    ref = registry.ref("fleet/mlp:load")
    push(fleet_bundle, ref)
    # this machine has no GPU TensorRT-RTX supports: without a fallback, the check says so
    with pytest.raises(CompatibilityError):
        rtxpack.load(ref)
    with pytest.warns(rtxpack.FallbackWarning):
        module = rtxpack.load(ref, fallback="onnxruntime")
    assert module(torch.zeros(2, 16)).shape == (2, 8)
    module.close()
    mark = registry.log_mark()
    with pytest.warns(rtxpack.FallbackWarning):
        rtxpack.load(ref, fallback="onnxruntime").close()
    # the second load asked only for the manifest (the tag may have moved), nothing else
    assert [r[0] for r in registry.requests(mark) if "/v2/fleet" in r[1]] == ["GET"]


def test_files_and_section_kinds_pull_does_not_select_on_always_come(
    registry: RegistryServer, onnx_mlp: Path, tmp_path: Path
) -> None:
    """User files, and kinds this rtxpack does not select on (signatures; kinds a later version
    adds), are pushed and always pulled, whatever the target. (Real signatures through a registry:
    tests/signing/test_signing_registry.py.)"""
    from conftest import MLP_SHAPES

    from rtxpack._format.container import BundleWriter, atomic_output, open_bundle_file

    plain = tmp_path / "plain.rtxpack"
    rtxpack.save(onnx_mlp, plain, shapes=MLP_SHAPES, files={"labels.txt": b"cat\ndog\n"})
    rtxpack.add_cache(plain, cache_blob(1), env(*GPUS[0]))
    signed = tmp_path / "future.rtxpack"
    bf = open_bundle_file(plain)
    try:
        with atomic_output(signed) as out:
            writer = BundleWriter(out)
            index = writer.copy_all(bf)
            writer.add_bytes("x_future_kind", "main", b"\x01from a later rtxpack", "stored")
            writer.finish(bf.manifest.renumbered(index, tuple(writer.sections)))
    finally:
        bf.close()
    ref = registry.ref("fleet/signed:1")
    push(signed, ref)
    out = tmp_path / "device.rtxpack"
    pull(ref, out, target=target(*GPUS[2]))  # no cache fits this GPU; no source asked for
    with rtxpack.open(out) as bundle:
        bundle.verify()
        kinds = sorted(s.kind for s in bundle.manifest.sections)
        assert kinds == ["engine", "file", "x_future_kind"]
        assert bundle.read_file("labels.txt") == b"cat\ndog\n"


def test_a_pull_pinned_by_digest_works_offline_from_the_store(
    registry: RegistryServer, fleet_bundle: Path, tmp_path: Path
) -> None:
    pushed = push(fleet_bundle, registry.ref("fleet/offline:1"))
    pull(pushed.reference, tmp_path / "a.rtxpack", target=target(*GPUS[0]))
    registry.stop()
    again = pull(pushed.reference, tmp_path / "b.rtxpack", target=target(*GPUS[0]))
    assert again.downloaded == 0
    assert sections_of(tmp_path / "a.rtxpack") == sections_of(tmp_path / "b.rtxpack")
    with pytest.raises(RegistryConnectionError):  # a tag must be asked for: it may have moved
        pull(registry.ref("fleet/offline:1"), tmp_path / "c.rtxpack", target=target(*GPUS[0]))


def test_a_section_kind_no_media_type_can_name_is_refused_before_anything_moves(
    registry: RegistryServer, onnx_bundle: Path, tmp_path: Path
) -> None:
    from rtxpack._format.container import BundleWriter, atomic_output, open_bundle_file

    odd = tmp_path / "odd.rtxpack"
    bf = open_bundle_file(onnx_bundle)
    try:
        with atomic_output(odd) as out:
            writer = BundleWriter(out)
            index = writer.copy_all(bf)
            writer.add_bytes("Odd Kind/1", "x", b"data", "stored")
            writer.finish(bf.manifest.renumbered(index, tuple(writer.sections)))
    finally:
        bf.close()
    mark = registry.log_mark()
    with pytest.raises(rtxpack.InvalidArgumentError, match="cannot be pushed"):
        push(odd, registry.ref("fleet/odd:1"))
    assert registry.requests(mark) == []


def test_stored_blobs_damaged_by_a_crash_are_downloaded_again_and_the_pull_succeeds(
    registry: RegistryServer, fleet_bundle: Path, tmp_path: Path
) -> None:
    # The store does not fsync its blobs: after a power loss one can be zero-filled (same size)
    # or hold other bytes. A pull must treat such a blob as a cache miss, not fail.
    ref = registry.ref("fleet/crash:1")
    push(fleet_bundle, ref)
    first = pull(ref, tmp_path / "a.rtxpack", target=target(*GPUS[0]))
    assert first.downloaded == 2
    store = ContentStore()
    doc = json.loads(_raw_manifest(registry, "fleet/crash", "1"))
    engine = doc["layers"][0]
    engine_blob = store.path(engine["digest"])
    engine_blob.write_bytes(bytes(engine["size"]))  # zero-filled, right size
    cache = next(
        layer
        for layer in doc["layers"][1:]
        if store.path(layer["digest"]).exists() and layer["digest"] != engine["digest"]
    )
    damaged = bytearray(store.path(cache["digest"]).read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    store.path(cache["digest"]).write_bytes(bytes(damaged))

    mark = registry.log_mark()
    second = pull(ref, tmp_path / "b.rtxpack", target=target(*GPUS[0]))
    assert (second.downloaded, second.reused) == (2, 0)
    gets = {r[1].rsplit("/", 1)[1] for r in registry.requests(mark) if r[0] == "GET"}
    assert {engine["digest"], cache["digest"]} <= gets
    with rtxpack.open(tmp_path / "b.rtxpack") as bundle:
        bundle.verify()
    assert (tmp_path / "a.rtxpack").read_bytes() == (tmp_path / "b.rtxpack").read_bytes()
    assert sha256_digest(engine_blob.read_bytes()) == engine["digest"]  # the store is repaired
    third = pull(ref, tmp_path / "c.rtxpack", target=target(*GPUS[0]))
    assert third.downloaded == 0


def test_a_damaged_stored_manifest_is_fetched_again_and_replaced(
    registry: RegistryServer, fleet_bundle: Path, tmp_path: Path
) -> None:
    pushed = push(fleet_bundle, registry.ref("fleet/crashm:1"))
    pull(pushed.reference, tmp_path / "a.rtxpack", target=target(*GPUS[0]))
    store = ContentStore()
    kept = store.path(pushed.digest)
    size = kept.stat().st_size
    kept.write_bytes(bytes(size))
    again = pull(pushed.reference, tmp_path / "b.rtxpack", target=target(*GPUS[0]))
    assert again.downloaded == 0
    assert sha256_digest(kept.read_bytes()) == pushed.digest
    registry.stop()  # repaired: the digest-pinned pull now works offline again
    pull(pushed.reference, tmp_path / "c.rtxpack", target=target(*GPUS[0]))


def test_discard_if_damaged_keeps_an_intact_blob_and_removes_a_damaged_one(
    tmp_path: Path,
) -> None:
    store = ContentStore(tmp_path / "s")
    data = b"engine bytes" * 1000
    digest = sha256_digest(data)
    store.put(digest, data)
    assert store.discard_if_damaged(digest) is False
    assert store.path(digest).read_bytes() == data
    store.path(digest).write_bytes(bytes(len(data)))
    assert store.read_small(digest, len(data)) is None
    assert store.discard_if_damaged(digest) is True
    assert not store.path(digest).exists()
    assert store.discard_if_damaged(digest) is True  # gone already: still a miss
    store.put(digest, data)
    store.path(digest).write_bytes(bytes(len(data)))
    store.put(digest, data)  # a damaged copy is replaced, not kept because its size matches
    assert store.read_small(digest, len(data)) == data
