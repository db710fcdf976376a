"""Signed bundles under a trust policy: what is accepted, refused, dropped and kept."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from signing_helpers import (
    ENV_4090,
    edit_manifest,
    read_raw,
    replace_section,
    section_bytes,
)

import rtxpack
from rtxpack._exceptions import IntegrityError, SignatureDroppedWarning, UntrustedBundleError
from rtxpack._format import container as _format
from rtxpack._signing import PrivateKey, TrustPolicy, TrustReport
from rtxpack._signing.bundle import read_envelopes, sign, trust_report

pytest_plugins = ["signing_fixtures"]


def report(path: Path, policy: TrustPolicy | None) -> TrustReport:
    bf = _format.open_bundle_file(path)
    try:
        return trust_report(bf, policy)
    finally:
        bf.close()


def refused(path: Path, policy: TrustPolicy) -> UntrustedBundleError:
    r = report(path, policy)
    with pytest.raises(UntrustedBundleError) as err:
        r.raise_for_refused()
    return err.value


def sig_index(path: Path, name: str | None = None) -> int:
    raw = read_raw(path)
    return next(
        i
        for i, s in enumerate(raw["sections"])
        if s["kind"] == "signature" and (name is None or s["name"] == name)
    )


@contextlib.contextmanager
def attacker_writer() -> Iterator[None]:
    """A writer that keeps signatures whether they hold or not (as a hostile tool would)."""
    original = _format.BundleWriter._drop_stale_signatures
    _format.BundleWriter._drop_stale_signatures = lambda self, m: m  # type: ignore[method-assign]
    try:
        yield
    finally:
        _format.BundleWriter._drop_stale_signatures = original  # type: ignore[method-assign]


def graft(envelope: bytes, onto: Path, name: str = "engines-graft") -> None:
    """Put a signature taken from another bundle into ``onto``."""
    with attacker_writer(), _format.rewriting(onto, onto) as (src, writer):
        index = writer.copy_all(src)
        writer.add_bytes("signature", name, envelope)
        writer.finish(src.manifest.renumbered(index, tuple(writer.sections)))


def envelope_of(path: Path, name: str | None = None) -> bytes:
    return section_bytes(path, sig_index(path, name))


# ---------------------------------------------------------------------------------------------


def test_signed_by_the_trusted_builder_is_accepted(bundle: Path, builder: PrivateKey) -> None:
    signed = sign(bundle, builder)
    assert signed.name == f"engines-{builder.key_id[:16]}"
    assert set(signed.parts) == {
        "engine/a",
        "engine/b",
        "source/a",
        "source/b",
        "samples/a",
        "file/labels.txt",
    }
    r = report(bundle, TrustPolicy(engines=[builder.public_key]))
    assert r.ok and not r.dropped
    for part in signed.parts:
        assert r.trusted_by(part) == (builder.key_id,)
    # the bundle still opens and verifies without a policy; old readers skip the new kind
    with rtxpack.open(bundle) as b:
        b.verify()
        assert [s.kind for s in b.manifest.sections].count("signature") == 1


def test_a_signature_survives_a_raw_copy_of_every_section(
    bundle: Path, builder: PrivateKey, tmp_path: Path
) -> None:
    """What a registry pull does (``copy_raw`` from blobs, which may return short reads, as a
    network stream does): the signature still holds."""
    import io

    class Trickle(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            return super().read(min(100, n if n is not None and n >= 0 else 100))

    sign(bundle, builder)
    out = tmp_path / "pulled.rtxpack"
    src = _format.open_bundle_file(bundle)
    try:
        with warnings.catch_warnings(), _format.atomic_output(out) as f:
            warnings.simplefilter("error", SignatureDroppedWarning)
            writer = _format.BundleWriter(f)
            index = {
                i: writer.copy_raw(s, Trickle(bytes(src.raw_view(s))), "registry")
                for i, s in enumerate(src.manifest.sections)
            }
            writer.finish(src.manifest.renumbered(index, tuple(writer.sections)))
    finally:
        src.close()
    assert out.read_bytes() == bundle.read_bytes()
    assert report(out, TrustPolicy(engines=[builder.public_key])).ok


def test_ecdsa_p256_keys_sign_too(bundle: Path, prewarmer: PrivateKey) -> None:
    sign(bundle, prewarmer)
    assert report(bundle, TrustPolicy(engines=[prewarmer.public_key])).ok


def test_unsigned_bundle_is_refused_naming_the_part(bundle: Path, builder: PrivateKey) -> None:
    err = refused(bundle, TrustPolicy(engines=[builder.public_key]))
    assert err.part == "engine/a"
    assert "engine 'a'" in str(err) and "no signature in the bundle covers it" in str(err)
    assert "source 'b'" in str(err)  # the other refused parts are listed


def test_untrusted_signer_is_refused_and_named(
    bundle: Path, builder: PrivateKey, stranger: PrivateKey
) -> None:
    sign(bundle, stranger)
    err = refused(bundle, TrustPolicy(engines=[builder.public_key]))
    assert stranger.key_id[:16] in str(err) and "not in the trust policy" in str(err)
    assert err.signers and stranger.key_id[:16] in err.signers[0]


def test_a_key_trusted_for_caches_cannot_vouch_for_engines(
    bundle: Path, builder: PrivateKey, prewarmer: PrivateKey
) -> None:
    sign(bundle, prewarmer, role="engines")
    policy = TrustPolicy(engines=[builder.public_key], caches=[prewarmer.public_key])
    assert "trusted only for role caches" in str(refused(bundle, policy))


def test_resigning_replaces_the_signature_of_the_same_key_and_role(
    bundle: Path, builder: PrivateKey, stranger: PrivateKey
) -> None:
    sign(bundle, builder)
    sign(bundle, builder)
    sign(bundle, stranger)
    kinds = [s["name"] for s in read_raw(bundle)["sections"] if s["kind"] == "signature"]
    assert sorted(kinds) == sorted(
        [f"engines-{builder.key_id[:16]}", f"engines-{stranger.key_id[:16]}"]
    )
    assert report(bundle, TrustPolicy(engines=[builder.public_key])).ok


# -- tampering with every signed field ---------------------------------------------------------


def _engine(raw: dict[str, Any], name: str = "a") -> dict[str, Any]:
    return next(e for e in raw["engines"] if e["name"] == name)


def _cache(raw: dict[str, Any], engine: str = "a") -> dict[str, Any]:
    return next(c for c in raw["caches"] if c["engine"] == engine)


ENGINE_EDITS = {
    "trt_version": lambda e: e.update(trt_version="1.7.2.1"),
    "compute_capabilities": lambda e: e.update(compute_capabilities=["8.6"]),
    "hardware_portable": lambda e: e.update(hardware_portable=not e["hardware_portable"]),
    "platform": lambda e: e.update(platform="windows_x86_64"),
    "inputs": lambda e: e["inputs"][0].update(dtype="float16"),
    "outputs": lambda e: e["outputs"][0].update(shape=[-1, 9]),
    "profiles": lambda e: e["profiles"][0]["x"].update(max=[64, 16]),
    "strategy": lambda e: e["strategy"].update(
        dynamic_shapes_kernel_specialization_strategy="none"
    ),
    "strategy ": lambda e: e["strategy"].update(cuda_graph_strategy="whole_graph_capture"),
    "strategy  ": lambda e: e["strategy"].update(
        execution_context_allocation_strategy="user_managed"
    ),
    "source_digest": lambda e: e.update(source_digest="blake3:" + "0" * 64),
    "future_field": lambda e: e.update(future_field=1),  # a key this rtxpack does not know
}


@pytest.mark.parametrize("field", sorted(ENGINE_EDITS))
def test_every_engine_record_field_is_signed(bundle: Path, builder: PrivateKey, field: str) -> None:
    sign(bundle, builder)
    edit_manifest(bundle, lambda raw: ENGINE_EDITS[field](_engine(raw)))
    err = refused(bundle, TrustPolicy(engines=[builder.public_key]))
    assert err.part == "engine/a"
    assert f"differs from what was signed in: {field.strip()}" in str(err)


def test_renaming_an_engine_unsigns_it(bundle: Path, builder: PrivateKey) -> None:
    sign(bundle, builder)

    def rename(raw: dict[str, Any]) -> None:
        _engine(raw, "b")["name"] = "c"
        for c in raw["caches"]:
            if c["engine"] == "b":
                c["engine"] = "c"

    edit_manifest(bundle, rename)
    err = refused(bundle, TrustPolicy(engines=[builder.public_key]))
    assert err.part == "engine/c"


def test_swapping_two_engines_records_is_refused(bundle: Path, builder: PrivateKey) -> None:
    sign(bundle, builder)

    def swap(raw: dict[str, Any]) -> None:  # point engine a at b's engine section, and back
        a, b = _engine(raw, "a"), _engine(raw, "b")
        a["section"], b["section"] = b["section"], a["section"]

    edit_manifest(bundle, swap)
    err = refused(bundle, TrustPolicy(engines=[builder.public_key]))
    assert "section bytes differ" in str(err)


CACHE_EDITS = {
    "environment": lambda c: c["environment"].update(driver_version="590.1"),
    "environment ": lambda c: c["environment"].update(gpu_name="NVIDIA GeForce RTX 4080"),
    "environment  ": lambda c: c["environment"].update(os="windows"),
    "environment   ": lambda c: c["environment"].update(compute_capability="8.6"),
    "environment    ": lambda c: c["environment"].update(trt_version="1.7.2.1"),
    "shapes": lambda c: c.update(shapes=[{"x": [8, 16]}]),
    "created_at": lambda c: c.update(created_at="2020-01-01T00:00:00Z"),
}


@pytest.mark.parametrize("field", sorted(CACHE_EDITS))
def test_every_cache_record_field_is_signed(
    bundle: Path, builder: PrivateKey, prewarmer: PrivateKey, field: str
) -> None:
    sign(bundle, builder)
    sign(bundle, prewarmer, role="caches")
    edit_manifest(bundle, lambda raw: CACHE_EDITS[field](_cache(raw)))
    policy = TrustPolicy(engines=[builder.public_key], caches=[prewarmer.public_key], require="all")
    err = refused(bundle, policy)
    assert err.part.startswith("runtime_cache/")
    assert f"differs from what was signed in: {field.strip()}" in str(err)


def test_renaming_a_cache_unsigns_it(
    bundle: Path, builder: PrivateKey, prewarmer: PrivateKey
) -> None:
    sign(bundle, builder)
    sign(bundle, prewarmer, role="caches")
    edit_manifest(bundle, lambda raw: _cache(raw).update(id="0badc0de"))
    policy = TrustPolicy(engines=[builder.public_key], caches=[prewarmer.public_key], require="all")
    err = refused(bundle, policy)
    assert err.part == "runtime_cache/0badc0de" and "no signature" in str(err)


def test_moving_a_cache_to_another_engine_is_refused(
    bundle: Path, builder: PrivateKey, prewarmer: PrivateKey
) -> None:
    sign(bundle, builder)
    sign(bundle, prewarmer, role="caches")
    edit_manifest(bundle, lambda raw: _cache(raw, "a").update(engine="b"))
    policy = TrustPolicy(engines=[builder.public_key], caches=[prewarmer.public_key], require="all")
    assert "differs from what was signed in: engine" in str(refused(bundle, policy))


@pytest.mark.parametrize(
    "kind,name", [("engine", "a"), ("source", "a"), ("samples", "a"), ("file", "labels.txt"),
                  ("runtime_cache", None)]
)  # fmt: skip
def test_every_section_is_signed(
    bundle: Path, builder: PrivateKey, prewarmer: PrivateKey, kind: str, name: str | None
) -> None:
    sign(bundle, builder)
    sign(bundle, prewarmer, role="caches")
    raw = read_raw(bundle)
    index = next(
        i
        for i, s in enumerate(raw["sections"])
        if s["kind"] == kind and (name is None or s["name"] == name)
    )
    original = section_bytes(bundle, index)
    replace_section(bundle, index, original[:-1] + bytes([original[-1] ^ 1]))
    policy = TrustPolicy(engines=[builder.public_key], caches=[prewarmer.public_key], require="all")
    err = refused(bundle, policy)
    assert err.part.startswith(kind + "/") and "section bytes differ" in str(err)


def test_bytes_changed_without_fixing_the_digest_fail_when_read(
    bundle: Path, builder: PrivateKey
) -> None:
    sign(bundle, builder)
    raw = read_raw(bundle)
    s = raw["sections"][_engine(raw)["section"]]
    data = bytearray(bundle.read_bytes())
    data[s["offset"] + 100] ^= 1
    bundle.write_bytes(bytes(data))
    assert report(bundle, TrustPolicy(engines=[builder.public_key])).ok  # the manifest holds
    with rtxpack.open(bundle) as b, pytest.raises(IntegrityError):
        b.read_engine("a")  # ...and the bytes are checked against it before use


def test_a_changed_statement_does_not_verify(bundle: Path, builder: PrivateKey) -> None:
    sign(bundle, builder)
    env = json.loads(envelope_of(bundle))
    import base64

    statement = json.loads(base64.b64decode(env["payload"]))
    statement["predicate"]["records"]["engine/a"]["platform"] = "windows_x86_64"
    env["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    replace_section(bundle, sig_index(bundle), json.dumps(env).encode())
    edit_manifest(bundle, lambda raw: _engine(raw).update(platform="windows_x86_64"))
    err = refused(bundle, TrustPolicy(engines=[builder.public_key]))
    assert "does not verify" in str(err)


# -- replay ------------------------------------------------------------------------------------


def test_a_signature_replayed_onto_another_bundle_is_refused(
    bundle: Path, engine_bundle: Path, tmp_path: Path, builder: PrivateKey
) -> None:
    sign(bundle, builder)
    other = tmp_path / "other.rtxpack"
    shutil.copyfile(engine_bundle, other)
    graft(envelope_of(bundle), other)
    err = refused(other, TrustPolicy(engines=[builder.public_key]))
    assert err.part == "engine/main"


def test_replay_onto_the_same_engine_with_another_strategy_is_refused(
    bundle: Path, tmp_path: Path, builder: PrivateKey
) -> None:
    """Same engine bytes, same name: only the strategy differs. The record is signed."""
    sign(bundle, builder)
    other = tmp_path / "other.rtxpack"
    with rtxpack.open(bundle) as b:
        engine = bytes(b.read_engine("a"))
    rtxpack.save(
        {"a": engine},
        other,
        strategy=rtxpack.RuntimeStrategy(cuda_graph_strategy="whole_graph_capture"),
    )
    graft(envelope_of(bundle), other)
    err = refused(other, TrustPolicy(engines=[builder.public_key]))
    assert err.part == "engine/a" and "differs from what was signed" in str(err)


def test_a_cache_signature_cannot_vouch_for_the_cache_on_another_engine(
    bundle: Path, tmp_path: Path, builder: PrivateKey, prewarmer: PrivateKey, mlp_engine: bytes
) -> None:
    """The same cache bytes and record, attached to a different engine named 'a'."""
    sign(bundle, prewarmer, role="caches")
    other = tmp_path / "other.rtxpack"
    rtxpack.save({"a": mlp_engine}, other)
    cache = _cache(read_raw(bundle))
    rtxpack.add_cache(other, b"cache-a-4090" * 10, ENV_4090, engine="a", shapes=[{"x": [4, 16]}])
    edit_manifest(
        other, lambda raw: raw["caches"][0].update(id=cache["id"], created_at=cache["created_at"])
    )
    sign(other, builder)
    graft(envelope_of(bundle), other, "caches-graft")
    policy = TrustPolicy(engines=[builder.public_key], caches=[prewarmer.public_key], require="all")
    assert "it was signed for another engine 'a'" in str(refused(other, policy))


# -- caches and several signers ----------------------------------------------------------------


def _policy(builder: PrivateKey, prewarmer: PrivateKey, **kw: Any) -> TrustPolicy:
    return TrustPolicy(
        engines=[builder.public_key], caches=[prewarmer.public_key], require="all", **kw
    )


def test_caches_signed_by_the_trusted_prewarm_key_are_accepted(
    bundle: Path, builder: PrivateKey, prewarmer: PrivateKey
) -> None:
    sign(bundle, builder)
    sign(bundle, prewarmer, role="caches")
    r = report(bundle, _policy(builder, prewarmer))
    assert r.ok and not r.dropped
    ids = [c["id"] for c in read_raw(bundle)["caches"]]
    assert all(r.trusted_by(f"runtime_cache/{i}") == (prewarmer.key_id,) for i in ids)
    # the engines policy does not look at caches at all
    assert report(bundle, TrustPolicy(engines=[builder.public_key])).ok


def test_caches_signed_by_another_key_are_refused_or_dropped(
    bundle: Path, builder: PrivateKey, prewarmer: PrivateKey, stranger: PrivateKey
) -> None:
    sign(bundle, builder)
    sign(bundle, stranger, role="caches")
    err = refused(bundle, _policy(builder, prewarmer))
    assert err.part.startswith("runtime_cache/") and stranger.key_id[:16] in str(err)
    r = report(bundle, _policy(builder, prewarmer, untrusted_caches="drop"))
    assert r.ok and sorted(r.dropped) == sorted(c["id"] for c in read_raw(bundle)["caches"])


def test_require_all_refuses_unsigned_samples_and_files(
    bundle: Path, builder: PrivateKey, prewarmer: PrivateKey
) -> None:
    sign(bundle, prewarmer, role="caches")
    sign(bundle, builder)
    raw = read_raw(bundle)
    edit_manifest(
        bundle, lambda raw: raw["files"].update({"extra.txt": raw["files"].pop("labels.txt")})
    )
    assert refused(bundle, _policy(builder, prewarmer)).part == "file/extra.txt"
    assert raw  # the engines-only policy does not require files
    assert report(bundle, TrustPolicy(engines=[builder.public_key])).ok


def test_adding_and_removing_caches_keeps_the_builders_signature(
    bundle: Path, builder: PrivateKey, prewarmer: PrivateKey
) -> None:
    sign(bundle, builder)
    sign(bundle, prewarmer, role="caches")
    ids = [c["id"] for c in read_raw(bundle)["caches"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error", SignatureDroppedWarning)
        new = rtxpack.add_cache(bundle, b"new cache" * 8, ENV_4090, engine="b")
        rtxpack.remove_cache(bundle, ids[0])
    assert len([s for s in read_raw(bundle)["sections"] if s["kind"] == "signature"]) == 2
    r = report(bundle, _policy(builder, prewarmer, untrusted_caches="drop"))
    assert r.ok and list(r.dropped) == [new.id]  # the new cache is not signed by anyone yet
    assert r.trusted_by(f"runtime_cache/{ids[1]}") == (prewarmer.key_id,)
    sign(bundle, prewarmer, role="caches")  # the prewarm machine signs what it added
    assert report(bundle, _policy(builder, prewarmer)).ok
    # removing every cache the prewarm signature covers drops it, and says so
    rtxpack.remove_cache(bundle, new.id)
    with pytest.warns(SignatureDroppedWarning, match="caches-.*signs nothing the new bundle"):
        rtxpack.remove_cache(bundle, ids[1])
    names = [s["name"] for s in read_raw(bundle)["sections"] if s["kind"] == "signature"]
    assert names == [f"engines-{builder.key_id[:16]}"]
    assert report(bundle, TrustPolicy(engines=[builder.public_key])).ok


def test_a_signature_far_into_a_large_bundle_is_kept_by_a_rewrite(
    bundle: Path, builder: PrivateKey
) -> None:
    """The writer checks signatures of up to 4 MiB wherever they lie: here after 5 MiB of data."""
    with _format.rewriting(bundle, bundle) as (src, writer):
        index = writer.copy_all(src)
        big = writer.add_bytes("file", "weights.bin", bytes(5 * 1024 * 1024))
        files = {**src.manifest.files, "weights.bin": big}
        m = src.manifest.renumbered(index, tuple(writer.sections))
        writer.finish(dataclasses.replace(m, files=files))
    sign(bundle, builder)
    assert read_raw(bundle)["sections"][-1]["offset"] > 5 * 1024 * 1024
    with warnings.catch_warnings():
        warnings.simplefilter("error", SignatureDroppedWarning)
        rtxpack.add_cache(bundle, b"new cache" * 8, ENV_4090, engine="b")
    assert report(bundle, TrustPolicy(engines=[builder.public_key])).ok


def test_a_per_device_subset_keeps_verifying(
    bundle: Path, tmp_path: Path, builder: PrivateKey, prewarmer: PrivateKey
) -> None:
    """What a registry pull for one device makes: engine a and its cache, no sources, no
    samples, no other engine; the signature sections come along. Absent parts are fine."""
    sign(bundle, builder)
    sign(bundle, prewarmer, role="caches")
    subset = tmp_path / "subset.rtxpack"
    from dataclasses import replace

    with _format.rewriting(bundle, subset) as (src, writer):
        m = src.manifest
        a = m.engine("a")
        cache = next(c for c in m.caches if c.engine == "a")
        keep = [a.section, cache.section] + [
            i for i, s in enumerate(m.sections) if s.kind == "signature"
        ]
        index = {i: writer.copy_section(src, m.sections[i]) for i in sorted(keep)}
        writer.finish(
            replace(
                m,
                sections=tuple(writer.sections),
                engines=(replace(a, section=index[a.section], source=None, samples=None),),
                caches=(replace(cache, section=index[cache.section]),),
                files={},
            )
        )
        assert not writer.dropped_signatures
    r = report(subset, _policy(builder, prewarmer))
    assert r.ok, r.refused
    assert set(r.parts) == {"engine/a", f"runtime_cache/{cache.id}"}


def test_rebuild_drops_the_signature_of_changed_engines(
    bundle: Path, tmp_path: Path, builder: PrivateKey
) -> None:
    sign(bundle, builder)
    out = tmp_path / "rebuilt.rtxpack"
    with pytest.warns(SignatureDroppedWarning, match="engine 'a' changed"):
        rtxpack.rebuild(bundle, out, engines=["a"], compute_capabilities=["8.6"])
    assert not [s for s in read_raw(out)["sections"] if s["kind"] == "signature"]
    assert "no signature" in str(refused(out, TrustPolicy(engines=[builder.public_key])))


def test_too_many_signature_sections_are_refused(bundle: Path, builder: PrivateKey) -> None:
    from rtxpack._exceptions import SignatureError

    sign(bundle, builder)
    env = envelope_of(bundle)
    with attacker_writer(), _format.rewriting(bundle, bundle) as (src, writer):
        index = writer.copy_all(src)
        for i in range(64):
            writer.add_bytes("signature", f"s{i}", env)
        writer.finish(src.manifest.renumbered(index, tuple(writer.sections)))
    bf = _format.open_bundle_file(bundle)
    try:
        with pytest.raises(SignatureError, match="more than the limit of 64"):
            read_envelopes(bf)
    finally:
        bf.close()


def test_migrate_keeps_signatures_that_hold(
    bundle: Path, tmp_path: Path, builder: PrivateKey, prewarmer: PrivateKey
) -> None:
    sign(bundle, builder)
    sign(bundle, prewarmer, role="caches")
    out = tmp_path / "migrated.rtxpack"
    with warnings.catch_warnings():
        warnings.simplefilter("error", SignatureDroppedWarning)
        rtxpack.migrate(bundle, out)
    policy = TrustPolicy(engines=[builder.public_key], caches=[prewarmer.public_key], require="all")
    r = report(out, policy)
    assert r.ok and len([s for s in r.signers if s.status == "trusted"]) == 2


def test_signature_sections_are_bounded_in_total(bundle: Path, builder: PrivateKey) -> None:
    from rtxpack._exceptions import SignatureError
    from rtxpack._signing.envelope import SignatureLimits

    sign(bundle, builder)
    bf = _format.open_bundle_file(bundle)
    try:
        size = next(s.size for s in bf.manifest.sections if s.kind == "signature")
        with pytest.raises(SignatureError, match="together"):
            read_envelopes(bf, SignatureLimits(max_total_bytes=size - 1))
        assert len(read_envelopes(bf, SignatureLimits(max_total_bytes=size))) == 1
    finally:
        bf.close()


def test_nothing_to_sign_is_an_error(bundle: Path, prewarmer: PrivateKey) -> None:
    from rtxpack._exceptions import SignatureError

    for cache in rtxpack.list_caches(bundle):
        rtxpack.remove_cache(bundle, cache.id)
    before = bundle.read_bytes()
    with pytest.raises(SignatureError, match="no runtime caches"):
        sign(bundle, prewarmer, role="caches")
    assert bundle.read_bytes() == before
