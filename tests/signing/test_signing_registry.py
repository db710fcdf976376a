"""Signatures travel through a real OCI registry, including a per-device subset pull."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from registry.registry_server import RegistryServer, needs_registry

import rtxpack
from rtxpack._registry.pull import pull
from rtxpack._registry.push import push

pytest_plugins = ["signing_fixtures"]
pytestmark = [needs_registry, pytest.mark.usefixtures("private_store_and_auth")]

GPU_5090 = rtxpack.Environment("1.7.1.116", "NVIDIA GeForce RTX 5090", "12.0", "580.65", "linux")
TARGET_4090 = rtxpack.Target(
    trt_version="1.7.1.116",
    compute_capability="8.9",
    driver_version="580.95",
    os="linux",
    gpu_name="NVIDIA GeForce RTX 4090",
)


def _require_all(builder: rtxpack.PrivateKey, prewarmer: rtxpack.PrivateKey) -> rtxpack.TrustPolicy:
    return rtxpack.TrustPolicy(
        engines=[builder.public_key], caches=[prewarmer.public_key], require="all"
    )


def test_signatures_survive_push_and_a_per_device_pull(
    registry: RegistryServer,
    bundle: Path,
    tmp_path: Path,
    builder: rtxpack.PrivateKey,
    prewarmer: rtxpack.PrivateKey,
) -> None:
    rtxpack.sign(bundle, builder)
    rtxpack.sign(bundle, prewarmer, role="caches")
    ref = registry.ref("signed/mlp:1")
    push(bundle, ref)
    out = tmp_path / "device.rtxpack"
    pull(ref, out, target=TARGET_4090)
    policy = _require_all(builder, prewarmer)
    with rtxpack.open(out, trust=policy) as b:
        assert [e.name for e in b.manifest.engines] == ["a"]  # b targets another GPU
        assert [c.environment.gpu_name for c in b.manifest.caches] == ["NVIDIA GeForce RTX 4090"]
        assert b.trust is not None and b.trust.ok and not b.trust.dropped
        assert {s.role for s in b.trust.signers if s.status == "trusted"} == {"engines", "caches"}
        b.verify()
    # a stranger's key is still refused on the device
    with pytest.raises(rtxpack.UntrustedBundleError):
        rtxpack.open(out, trust=rtxpack.TrustPolicy(engines=[prewarmer.public_key]))


def test_a_cache_only_push_carries_the_prewarm_signature(
    registry: RegistryServer,
    bundle: Path,
    tmp_path: Path,
    builder: rtxpack.PrivateKey,
    prewarmer: rtxpack.PrivateKey,
) -> None:
    from rtxpack._registry.push import push_caches

    for cache in rtxpack.list_caches(bundle):  # the build machine ships no caches
        rtxpack.remove_cache(bundle, cache.id)
    rtxpack.sign(bundle, builder)
    ref = registry.ref("signed/warm:1")
    push(bundle, ref)
    # a prewarm machine adds a cache for its GPU, signs it, and pushes only that
    warm = tmp_path / "warm.rtxpack"
    gpu = rtxpack.Environment("1.7.1.116", "NVIDIA GeForce RTX 4090", "8.9", "580.65", "linux")
    rtxpack.add_cache(bundle, b"warm kernels" * 100, gpu, engine="a", output=warm)
    rtxpack.sign(warm, prewarmer, role="caches")
    result = push_caches(warm, ref)
    assert len(result.caches_added) == 1
    out = tmp_path / "device.rtxpack"
    pull(ref, out, target=TARGET_4090)
    policy = _require_all(builder, prewarmer)
    with rtxpack.open(out, trust=policy) as b:
        assert len(b.manifest.caches) == 1
        assert b.trust is not None and b.trust.ok
        assert b.trust.trusted_by(f"runtime_cache/{b.manifest.caches[0].id}") == (prewarmer.key_id,)


def test_a_device_pull_without_the_signed_caches_drops_their_signature_quietly(
    registry: RegistryServer,
    bundle: Path,
    tmp_path: Path,
    builder: rtxpack.PrivateKey,
    prewarmer: rtxpack.PrivateKey,
) -> None:
    """A pull that leaves out every cache a prewarm signature covers (no cache fits the device,
    or --no-caches) leaves that signature out too, without telling the device to sign again:
    nothing it holds was signed by it. The builder's signature still verifies."""
    import warnings

    rtxpack.sign(bundle, builder)
    rtxpack.sign(bundle, prewarmer, role="caches")
    ref = registry.ref("signed/nocache:1")
    push(bundle, ref)
    out = tmp_path / "device.rtxpack"
    with warnings.catch_warnings():
        warnings.simplefilter("error", rtxpack.SignatureDroppedWarning)
        pull(ref, out, engines="a", caches=False)
    with rtxpack.open(out, trust=rtxpack.TrustPolicy(engines=[builder.public_key])) as b:
        assert b.manifest.caches == ()
        names = [s.name for s in b.manifest.sections if s.kind == "signature"]
        assert names == [f"engines-{builder.key_id[:16]}"]
        assert b.trust is not None and b.trust.ok


def _remote_signatures(registry: RegistryServer, ref: str) -> list[tuple[str, str]]:
    """(name, digest) of each signature section of the bundle manifest at ``ref``."""
    from rtxpack._registry.client import RegistryClient
    from rtxpack._registry.reference import parse_reference
    from rtxpack._registry.remote import fetch_remote

    reference = parse_reference(ref)
    with RegistryClient.for_reference(reference) as client:
        sections = fetch_remote(client, reference).manifest.sections
    return [(s.name, s.digest) for s in sections if s.kind == "signature"]


def _signature(path: Path, name: str) -> str:
    with rtxpack.open(path) as b:
        (digest,) = [s.digest for s in b.manifest.sections if s.name == name]
    return digest


def _warm_tag(
    registry: RegistryServer, bundle: Path, tmp_path: Path, builder: rtxpack.PrivateKey, tag: str
) -> tuple[str, Path]:
    """A tag without caches signed by the builder, and a local copy with one 4090 cache."""
    from signing_helpers import ENV_4090

    for cache in rtxpack.list_caches(bundle):
        rtxpack.remove_cache(bundle, cache.id)
    rtxpack.sign(bundle, builder)
    ref = registry.ref(tag)
    push(bundle, ref)
    warm = tmp_path / "warm1.rtxpack"
    rtxpack.add_cache(bundle, b"4090 kernels" * 100, ENV_4090, engine="a", output=warm)
    return ref, warm


def test_a_new_prewarm_signature_replaces_the_one_it_supersedes(
    registry: RegistryServer,
    bundle: Path,
    tmp_path: Path,
    builder: rtxpack.PrivateKey,
    prewarmer: rtxpack.PrivateKey,
) -> None:
    # The prewarm machine pushes a signed cache, later another one, re-signing both: the tag
    # used to keep its first signature beside the new one (two sections 'caches-<key>', the old
    # one stale), and every device downloaded both.
    from rtxpack._registry.push import push_caches

    ref, warm1 = _warm_tag(registry, bundle, tmp_path, builder, "signed/twice:1")
    rtxpack.sign(warm1, prewarmer, role="caches")
    push_caches(warm1, ref)
    name = f"caches-{prewarmer.key_id[:16]}"
    assert [n for n, _ in _remote_signatures(registry, ref)].count(name) == 1
    warm2 = tmp_path / "warm2.rtxpack"
    rtxpack.add_cache(warm1, b"5090 kernels" * 100, GPU_5090, engine="b", output=warm2)
    rtxpack.sign(warm2, prewarmer, role="caches")  # signs both caches, replacing its signature
    result = push_caches(warm2, ref)
    assert len(result.caches_added) == 1
    caches_sigs = [d for n, d in _remote_signatures(registry, ref) if n == name]
    assert caches_sigs == [_signature(warm2, name)]  # the new one, alone
    policy = _require_all(builder, prewarmer)
    target_5090 = replace(TARGET_4090, compute_capability="12.0", gpu_name=GPU_5090.gpu_name)
    for engines, target in (("a", TARGET_4090), ("b", target_5090)):
        out = tmp_path / f"device-{engines}.rtxpack"
        pull(ref, out, target=target, engines=engines)
        with rtxpack.open(out, trust=policy) as b:
            names = [s.name for s in b.manifest.sections if s.kind == "signature"]
            assert names.count(name) == 1
            assert len(b.manifest.caches) == 1
            assert b.trust is not None and b.trust.ok and not b.trust.dropped
            cache_part = f"runtime_cache/{b.manifest.caches[0].id}"
            assert b.trust.trusted_by(cache_part) == (prewarmer.key_id,)
            b.verify()


def test_a_signature_covering_less_than_the_tags_is_not_published(
    registry: RegistryServer,
    bundle: Path,
    tmp_path: Path,
    builder: rtxpack.PrivateKey,
    prewarmer: rtxpack.PrivateKey,
) -> None:
    # The tag's signature of this key already vouches for everything the local one does (and
    # more): publishing the local one too would be a second, redundant 'caches-<key>'.
    from rtxpack._registry.push import push_caches

    ref, warm1 = _warm_tag(registry, bundle, tmp_path, builder, "signed/subset:1")
    both = tmp_path / "both.rtxpack"
    rtxpack.add_cache(warm1, b"5090 kernels" * 100, GPU_5090, engine="b", output=both)
    rtxpack.sign(both, prewarmer, role="caches")
    push_caches(both, ref)
    name = f"caches-{prewarmer.key_id[:16]}"
    tag_signature = _signature(both, name)
    rtxpack.sign(warm1, prewarmer, role="caches")  # only the 4090 cache ...
    late = tmp_path / "late.rtxpack"
    gpu = rtxpack.Environment("1.7.1.116", "NVIDIA GeForce RTX 4080", "8.9", "580.65", "linux")
    rtxpack.add_cache(warm1, b"4080 kernels" * 100, gpu, engine="a", output=late)  # ... unsigned
    assert len(push_caches(late, ref).caches_added) == 1
    assert [d for n, d in _remote_signatures(registry, ref) if n == name] == [tag_signature]


def test_signatures_of_one_key_over_different_caches_are_both_kept(
    registry: RegistryServer,
    bundle: Path,
    tmp_path: Path,
    builder: rtxpack.PrivateKey,
    prewarmer: rtxpack.PrivateKey,
) -> None:
    # Two prewarm machines with one key, each signing only its own cache: neither signature
    # supersedes the other and no key is at hand to merge them, so both stay (each holds).
    from rtxpack._registry.push import push_caches

    ref, warm1 = _warm_tag(registry, bundle, tmp_path, builder, "signed/split:1")
    rtxpack.sign(warm1, prewarmer, role="caches")
    push_caches(warm1, ref)
    other = tmp_path / "other.rtxpack"
    rtxpack.add_cache(bundle, b"5090 kernels" * 100, GPU_5090, engine="b", output=other)
    rtxpack.sign(other, prewarmer, role="caches")
    push_caches(other, ref)
    name = f"caches-{prewarmer.key_id[:16]}"
    assert [d for n, d in _remote_signatures(registry, ref) if n == name] == [
        _signature(warm1, name),
        _signature(other, name),
    ]
    policy = _require_all(builder, prewarmer)
    out = tmp_path / "device.rtxpack"
    pull(ref, out, target=TARGET_4090, engines="a")
    with rtxpack.open(out, trust=policy) as b:  # the 5090 cache's signature is left out
        assert [s.name for s in b.manifest.sections if s.kind == "signature"].count(name) == 1
        assert b.trust is not None and b.trust.ok
    # the first machine adds a cache and signs its two: that supersedes its first signature only
    from signing_helpers import ENV_4090

    newer = tmp_path / "newer.rtxpack"
    driver = replace(ENV_4090, driver_version="581.08")
    rtxpack.add_cache(warm1, b"4090 kernels, newer driver" * 50, driver, engine="a", output=newer)
    rtxpack.sign(newer, prewarmer, role="caches")
    push_caches(newer, ref)
    assert [d for n, d in _remote_signatures(registry, ref) if n == name] == [
        _signature(other, name),
        _signature(newer, name),
    ]


def test_a_tag_signature_that_does_not_hold_is_left_out_with_a_warning(
    registry: RegistryServer,
    bundle: Path,
    tmp_path: Path,
    builder: rtxpack.PrivateKey,
    prewarmer: rtxpack.PrivateKey,
) -> None:
    from signing_helpers import replace_section

    from rtxpack._registry.push import push_caches

    ref, warm1 = _warm_tag(registry, bundle, tmp_path, builder, "signed/damaged:1")
    rtxpack.sign(warm1, prewarmer, role="caches")
    with rtxpack.open(warm1) as b:
        (index,) = [i for i, s in enumerate(b.manifest.sections) if s.name.startswith("caches-")]
    replace_section(warm1, index, b'{"payloadType": "damaged"}')  # digests fixed up
    push(warm1, ref)
    later = tmp_path / "later.rtxpack"
    rtxpack.add_cache(bundle, b"5090 kernels" * 100, GPU_5090, engine="b", output=later)
    with pytest.warns(rtxpack.SignatureDroppedWarning, match="left out the signature 'caches-"):
        push_caches(later, ref)
    assert [n for n, _ in _remote_signatures(registry, ref)] == [f"engines-{builder.key_id[:16]}"]
