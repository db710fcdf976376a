"""Signatures travel through a real OCI registry, including a per-device subset pull."""

from __future__ import annotations

from pathlib import Path

import pytest
from registry.registry_server import RegistryServer, needs_registry

import rtxpack
from rtxpack._registry.pull import pull
from rtxpack._registry.push import push

pytest_plugins = ["signing_fixtures"]
pytestmark = [needs_registry, pytest.mark.usefixtures("private_store_and_auth")]


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
    here = rtxpack.Target(
        trt_version="1.7.1.116",
        compute_capability="8.9",
        driver_version="580.95",
        os="linux",
        gpu_name="NVIDIA GeForce RTX 4090",
    )
    pull(ref, out, target=here)
    policy = rtxpack.TrustPolicy(
        engines=[builder.public_key], caches=[prewarmer.public_key], require="all"
    )
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
    here = rtxpack.Target(
        trt_version="1.7.1.116",
        compute_capability="8.9",
        driver_version="580.95",
        os="linux",
        gpu_name="NVIDIA GeForce RTX 4090",
    )
    pull(ref, out, target=here)
    policy = rtxpack.TrustPolicy(
        engines=[builder.public_key], caches=[prewarmer.public_key], require="all"
    )
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
