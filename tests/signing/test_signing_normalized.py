"""Records compared in normalized form: an optional field absent (an earlier or independent
writer) and the same field at its default (every rewrite writes it) are the same signed record."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
from independent_verifier import trusted_parts
from signing_helpers import ENV_4090, edit_manifest, read_raw

import rtxpack
from rtxpack._exceptions import (
    SignatureDroppedWarning,
    UntrustedBundleError,
    UntrustedCacheWarning,
)
from rtxpack._format import container as _format
from rtxpack._signing import PrivateKey, TrustPolicy
from rtxpack._signing.bundle import sign
from rtxpack._signing.sign import sign_manifest

pytest_plugins = ["signing_fixtures"]


def _omit_optional_fields(raw: dict[str, Any]) -> None:
    """What a writer that leaves out optional fields at their default writes."""
    for c in raw["caches"]:
        c["environment"].pop("compute_in_graphics")
        c.pop("shapes") if c["shapes"] == [] else None
    for e in raw["engines"]:
        e["strategy"].pop("weight_streaming_budget")
        for key in ("equal_dims", "source_data", "output_tree"):
            if not e.get(key):
                e.pop(key, None)


def _sign_as_stored(
    path: Path, key: PrivateKey, role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an independent signer following docs/signing.md does: sign the records as the
    manifest stores them (here: without the optional fields), then add the section."""
    signed = sign_manifest(read_raw(path), key, role)
    with monkeypatch.context() as m:
        m.setattr(_format.BundleWriter, "_drop_stale_signatures", lambda self, manifest: manifest)
        with _format.rewriting(path, path) as (src, writer):
            index = writer.copy_all(src)
            writer.add_bytes("signature", signed.name, signed.envelope)
            writer.finish(src.manifest.renumbered(index, tuple(writer.sections)))
    edit_manifest(path, _omit_optional_fields)  # that rewrite wrote the defaults: as stored again


def _policy(builder: PrivateKey, prewarmer: PrivateKey) -> TrustPolicy:
    return TrustPolicy(
        engines=[builder.public_key],
        caches=[prewarmer.public_key],
        require="all",
        untrusted_caches="drop",
    )


def test_a_rewrite_that_writes_defaults_keeps_the_signatures(
    bundle: Path, builder: PrivateKey, prewarmer: PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    edit_manifest(bundle, _omit_optional_fields)
    _sign_as_stored(bundle, builder, "engines", monkeypatch)
    _sign_as_stored(bundle, prewarmer, "caches", monkeypatch)
    assert "compute_in_graphics" not in read_raw(bundle)["caches"][0]["environment"]
    ids = [c["id"] for c in read_raw(bundle)["caches"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error", SignatureDroppedWarning)
        new = rtxpack.add_cache(bundle, b"another cache" * 8, ENV_4090, engine="b")
    raw = read_raw(bundle)
    assert all(c["environment"]["compute_in_graphics"] is False for c in raw["caches"])
    assert len([s for s in raw["sections"] if s["kind"] == "signature"]) == 2
    with (
        pytest.warns(UntrustedCacheWarning, match=new.id),
        rtxpack.open(bundle, trust=_policy(builder, prewarmer)) as b,
    ):
        report = b.signatures(_policy(builder, prewarmer))
    assert report.ok and list(report.dropped) == [new.id]  # only the unsigned new cache
    assert all(report.trusted_by(f"runtime_cache/{i}") == (prewarmer.key_id,) for i in ids)
    # the independent verifier, following docs/signing.md, agrees
    keys = {"engines": [builder.public_key.to_pem()], "caches": [prewarmer.public_key.to_pem()]}
    trusted = trusted_parts(bundle, keys)
    assert all(trusted[f"runtime_cache/{i}"] == {prewarmer.key_id} for i in ids)
    assert trusted["engine/a"] == trusted["engine/b"] == {builder.key_id}
    assert trusted[f"runtime_cache/{new.id}"] == set()


def test_a_copy_that_omits_defaults_keeps_the_signatures(
    bundle: Path, tmp_path: Path, builder: PrivateKey, prewarmer: PrivateKey
) -> None:
    """The other way round: signed with every default written, read from a copy without them."""
    sign(bundle, builder)
    sign(bundle, prewarmer, role="caches")
    copy = tmp_path / "copy.rtxpack"
    shutil.copyfile(bundle, copy)
    edit_manifest(copy, _omit_optional_fields)
    with rtxpack.open(copy, trust=_policy(builder, prewarmer)) as b:
        report = b.signatures(_policy(builder, prewarmer))
    assert report.ok and not report.dropped


def test_a_value_other_than_the_default_still_breaks_the_signature(
    bundle: Path, builder: PrivateKey, prewarmer: PrivateKey
) -> None:
    edit_manifest(bundle, _omit_optional_fields)
    sign(bundle, builder)
    sign(bundle, prewarmer, role="caches")

    def cig(raw: dict[str, Any]) -> None:
        raw["caches"][0]["environment"]["compute_in_graphics"] = True

    edit_manifest(bundle, cig)
    policy = TrustPolicy(engines=[builder.public_key], caches=[prewarmer.public_key], require="all")
    with pytest.raises(UntrustedBundleError, match=r"record differs .* in: environment"):
        rtxpack.open(bundle, trust=policy)


def test_dropping_an_external_data_source_keeps_the_engine_signature(
    tmp_path: Path, builder: PrivateKey
) -> None:
    """A device pull without the source, or drop-source, removes the source's data sections and
    renumbers the rest: the engine's record must not pin those indices, or the builder's
    signature is dropped and a trusting device refuses the engine."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((16, 16), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(
        model, tmp_path / "m.onnx", save_as_external_data=True, location="m.data", size_threshold=0
    )
    signed = tmp_path / "signed.rtxpack"
    rtxpack.save(tmp_path / "m.onnx", signed, samples=False)
    assert read_raw(signed)["engines"][0]["source_data"]  # the case: external data in the bundle
    sign(signed, builder, role="engines")
    dropped = tmp_path / "dropped.rtxpack"
    with warnings.catch_warnings():
        warnings.simplefilter("error", SignatureDroppedWarning)
        rtxpack.drop_source(signed, output=dropped)
    policy = TrustPolicy(engines=[builder.public_key], require="engines")
    with rtxpack.open(dropped, trust=policy) as b:
        assert b.signatures(policy).trusted_by("engine/main") == (builder.key_id,)
    trusted = trusted_parts(dropped, {"engines": [builder.public_key.to_pem()]})
    assert trusted["engine/main"] == {builder.key_id}
    # the source's data files stay signed: swapping them in the signed bundle is still refused
    assert trusted_parts(signed, {"engines": [builder.public_key.to_pem()]})["source/main"] == {
        builder.key_id
    }
