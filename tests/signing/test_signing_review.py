"""Attacks found in the review of issue 11: each gets an untrusted byte past a trust policy on the
code before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from independent_verifier import trusted_parts
from signing_helpers import read_raw, replace_section, section_bytes

import rtxpack
from rtxpack._exceptions import IntegrityError, UntrustedBundleError
from rtxpack._signing import PrivateKey, TrustPolicy
from rtxpack._signing.bundle import sign

pytest_plugins = ["signing_fixtures"]

MLP_SHAPES = {"x": ((1, 16), (4, 16), (8, 16))}


@pytest.fixture
def external_bundle(tmp_path: Path) -> Path:
    """An engine whose ONNX source keeps its weights in external data files (sections of kind
    source_data)."""
    pytest.importorskip("onnx")
    from test_source import make_external_mlp

    model = make_external_mlp(tmp_path / "model")
    return rtxpack.save(
        model, tmp_path / "ext.rtxpack", shapes=MLP_SHAPES, compute_capabilities=["8.9"]
    )


def test_the_source_external_data_is_signed(external_bundle: Path, builder: PrivateKey) -> None:
    """The external weights of a signed source are what the ONNX Runtime fallback and a rebuild
    run: swapping them (with every digest fixed up) must unsign the source."""
    sign(external_bundle, builder)
    policy = TrustPolicy(engines=[builder.public_key])
    with rtxpack.open(external_bundle, trust=policy):
        pass
    keys = {"engines": [builder.public_key.to_pem()]}
    assert trusted_parts(external_bundle, keys)["source/main"] == {builder.key_id}
    raw = read_raw(external_bundle)
    index = next(i for i, s in enumerate(raw["sections"]) if s["kind"] == "source_data")
    original = section_bytes(external_bundle, index)
    replace_section(external_bundle, index, bytes(len(original)))  # zero weights
    with pytest.raises(UntrustedBundleError) as err:
        rtxpack.open(external_bundle, trust=policy)
    assert err.value.part == "source/main" and "record differs" in str(err.value)
    assert trusted_parts(external_bundle, keys)["source/main"] == set()  # the spec agrees


def _old_release_copy(src_path: Path, out: Path) -> Path:
    """``src_path`` with its engines recorded as built by TensorRT-RTX 1.6 (load(rebuild=True)
    rebuilds them from their source)."""
    from dataclasses import replace

    from rtxpack._format import container

    src = container.BundleFile(src_path)
    with container.atomic_output(out) as f:
        w = container.BundleWriter(f)
        for s in src.manifest.sections:
            w.copy_section(src, s)
        engines = tuple(replace(e, trt_version="1.6.0.0") for e in src.manifest.engines)
        w.finish(replace(src.manifest, sections=tuple(w.sections), engines=engines))
    src.close()
    return out


def test_rebuild_reads_the_bundle_the_policy_checked(
    tmp_path: Path, onnx_bundle: Path, builder: PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """load(rebuild=True) rebuilt from the path, opened again after the policy check: a bundle
    put in its place in between (unsigned, another source) was rebuilt and loaded unchecked."""
    import tensorrt_rtx

    from rtxpack import Target, _loader
    from rtxpack._checks import machine, validity

    signed = _old_release_copy(onnx_bundle, tmp_path / "old.rtxpack")
    sign(signed, builder)
    hostile = _old_release_copy(onnx_bundle, tmp_path / "hostile.rtxpack")
    here = Target(
        trt_version=tensorrt_rtx.__version__,
        compute_capability="8.9",
        driver_version="580.65",
        os="linux",
        gpu_name="NVIDIA GeForce RTX 4090",
        platform="linux_x86_64",
    )
    monkeypatch.setattr(machine, "local_target", lambda: here)

    def swap(bundle: object, engines: object) -> list[object]:
        # runs after the policy check, before the rebuild: the attacker's moment
        if hostile.exists():
            hostile.replace(signed)
        return []

    monkeypatch.setattr(validity, "runtime_findings", swap)
    monkeypatch.setattr(_loader, "_load_tensorrt", lambda *a: "module")
    policy = TrustPolicy(engines=[builder.public_key])
    with pytest.warns(rtxpack.RebuildWarning), pytest.raises(IntegrityError) as err:
        rtxpack.load(signed, rebuild=True, trust=policy, cache_dir=tmp_path / "cache")
    assert "changed" in str(err.value)


def test_a_dropped_cache_never_reaches_tensorrt_through_the_local_cache(
    bundle: Path, builder: PrivateKey, tmp_path: Path
) -> None:
    """A load without a cache policy grows this machine's local cache file from the bundle's
    (unsigned) cache. A later load under require="all", untrusted_caches="drop" drops that
    cache, and must not start from the local file grown from it either."""
    import warnings

    from signing_helpers import ENV_4090

    from rtxpack._caches.local import persist_runtime_cache
    from rtxpack._caches.selection import plan_runtime_cache
    from rtxpack._checks.target import Target

    here = Target(
        trt_version=ENV_4090.trt_version,
        compute_capability=ENV_4090.compute_capability,
        driver_version=ENV_4090.driver_version,
        os=ENV_4090.os,
        gpu_name=ENV_4090.gpu_name,
        platform="linux_x86_64",
    )
    sign(bundle, builder)  # the engines only: the caches stay unsigned
    loose = TrustPolicy(engines=[builder.public_key])
    with rtxpack.open(bundle, trust=loose) as b:
        plan = plan_runtime_cache(b, b.manifest.engine("a"), here, cache_dir=tmp_path)
        assert plan.cache_id is not None and plan.blob is not None  # the unsigned cache
        assert plan.persist_path is not None
        assert persist_runtime_cache(plan.persist_path, plan.blob + b"+grown here")
    strict = TrustPolicy(engines=[builder.public_key], require="all", untrusted_caches="drop")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rtxpack.open(bundle, trust=strict) as b:
            assert not [c for c in b.manifest.caches if c.engine == "a"]  # dropped
            plan = plan_runtime_cache(b, b.manifest.engine("a"), here, cache_dir=tmp_path)
    assert plan.blob is None and plan.origin == "none"
    # ...and without a policy that checks caches, the grown file is still used (as before)
    with rtxpack.open(bundle, trust=loose) as b:
        plan = plan_runtime_cache(b, b.manifest.engine("a"), here, cache_dir=tmp_path)
        assert plan.blob is not None and plan.blob.endswith(b"+grown here")
    # ...and under require="all" once the cache it grew from is signed by a trusted prewarm key

    prewarm = PrivateKey.generate("ecdsa-p256")
    sign(bundle, prewarm, role="caches")
    trusted = TrustPolicy(engines=[builder.public_key], caches=[prewarm.public_key], require="all")
    with rtxpack.open(bundle, trust=trusted) as b:
        plan = plan_runtime_cache(b, b.manifest.engine("a"), here, cache_dir=tmp_path)
        assert plan.blob is not None and plan.blob.endswith(b"+grown here")


def test_a_rebuild_that_rebuilt_nothing_loads_under_the_policy(
    tmp_path: Path, onnx_bundle: Path, builder: PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the rebuild finds nothing to rebuild it returns the bundle's own path, which load()
    then opened again with trust=False: whatever was at the path by then loaded unchecked."""
    import tensorrt_rtx

    from rtxpack import Target, _loader
    from rtxpack._checks import machine, validity
    from rtxpack._upgrade import rebuild as _rebuild

    signed = _old_release_copy(onnx_bundle, tmp_path / "old.rtxpack")
    sign(signed, builder)
    hostile = _old_release_copy(onnx_bundle, tmp_path / "hostile.rtxpack")
    here = Target(
        trt_version=tensorrt_rtx.__version__,
        compute_capability="8.9",
        driver_version="580.65",
        os="linux",
        gpu_name="NVIDIA GeForce RTX 4090",
        platform="linux_x86_64",
    )
    monkeypatch.setattr(machine, "local_target", lambda: here)
    monkeypatch.setattr(validity, "runtime_findings", lambda bundle, engines: [])

    def nothing_to_rebuild(path: Path, **kwargs: object) -> Path:
        hostile.replace(path)  # the attacker's moment: after every check of the rebuild
        return Path(path)

    monkeypatch.setattr(_rebuild, "rebuild_to_cache", nothing_to_rebuild)
    monkeypatch.setattr(_loader, "_load_tensorrt", lambda *a: "module")
    policy = TrustPolicy(engines=[builder.public_key])
    with pytest.warns(rtxpack.RebuildWarning), pytest.raises(UntrustedBundleError):
        rtxpack.load(signed, rebuild=True, trust=policy, cache_dir=tmp_path / "cache")


def test_bytes_written_in_place_after_the_check_never_reach_tensorrt(
    bundle: Path, builder: PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a policy, load() checked a stored engine on the file's mapping and handed that
    mapping to TensorRT-RTX: a write into the file in place (not a rename) right after the
    check showed through, so unsigned bytes were deserialized."""
    import torch

    from rtxpack import _loader
    from rtxpack._backends import tensorrt
    from rtxpack._format import container

    sign(bundle, builder)
    with rtxpack.open(bundle) as b:
        section = b.manifest.sections[b.manifest.engine("a").section]
        assert section.codec == "stored"
        original = bytes(b.read_engine("a"))
    real = container.digest

    def check_then_tamper(data: bytes | bytearray | memoryview) -> str:
        got = real(data)
        if len(data) == len(original):
            with open(bundle, "r+b") as f:  # the attacker writes into the file itself
                f.seek(section.offset)
                f.write(bytes(x ^ 0xFF for x in original[:16]))
        return got

    handed: list[bytes] = []

    def fake_module(data: bytes | memoryview, **kwargs: object) -> str:
        handed.append(bytes(data))
        return "module"

    monkeypatch.setattr(tensorrt, "TensorRTModule", fake_module)
    with rtxpack.open(bundle, trust=TrustPolicy(engines=[builder.public_key])) as b:
        monkeypatch.setattr(container, "digest", check_then_tamper)
        info = b.manifest.engine("a")
        dev = torch.device("cuda")
        assert _loader._load_tensorrt(b, info, dev, info.strategy, None, None) == "module"
    assert handed == [original]
