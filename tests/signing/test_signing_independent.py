"""The independent verifier (docs/signing.md, cryptography + msgpack only) agrees with rtxpack."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import independent_verifier
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from signing_helpers import (
    ENV_4090,
    PLACES,
    edit_manifest,
    mutate_envelope,
    read_raw,
    replace_section,
    section_bytes,
)

import rtxpack
from rtxpack._format import container as _format
from rtxpack._signing import PrivateKey, TrustPolicy
from rtxpack._signing.bundle import sign, trust_report

pytest_plugins = ["signing_fixtures"]


def assert_agree(path: Path, builder: PrivateKey, prewarmer: PrivateKey) -> dict[str, set[str]]:
    policy = TrustPolicy(engines=[builder.public_key], caches=[prewarmer.public_key], require="all")
    bf = _format.open_bundle_file(path)
    try:
        report = trust_report(bf, policy)
    finally:
        bf.close()
    ours = {p: set(report.trusted_by(p)) for p in report.parts}
    theirs = independent_verifier.trusted_parts(
        path,
        {"engines": [builder.public_key.to_pem()], "caches": [prewarmer.public_key.to_pem()]},
    )
    assert ours == theirs
    assert (not report.refused) == all(theirs.values())
    return theirs


def test_key_ids_agree(builder: PrivateKey, prewarmer: PrivateKey) -> None:
    for key in (builder, prewarmer):
        assert independent_verifier.key_id(key.public_key.to_pem()) == key.key_id


def test_agreement_on_a_fully_signed_bundle(
    bundle: Path, builder: PrivateKey, prewarmer: PrivateKey
) -> None:
    assert not any(assert_agree(bundle, builder, prewarmer).values())  # unsigned: nothing
    sign(bundle, builder)
    sign(bundle, prewarmer, role="caches")
    trusted = assert_agree(bundle, builder, prewarmer)
    assert all(trusted.values()) and len(trusted) == 8


def test_agreement_on_tampered_and_foreign_signatures(
    bundle: Path, builder: PrivateKey, prewarmer: PrivateKey, stranger: PrivateKey
) -> None:
    sign(bundle, builder)
    sign(bundle, stranger, role="caches")
    trusted = assert_agree(bundle, builder, prewarmer)
    assert not any(v for k, v in trusted.items() if k.startswith("runtime_cache/"))
    sign(bundle, prewarmer, role="caches")
    edit_manifest(
        bundle,
        lambda raw: raw["engines"][0]["strategy"].update(
            cuda_graph_strategy="disabled"
            if raw["engines"][0]["strategy"]["cuda_graph_strategy"] != "disabled"
            else "whole_graph_capture"
        ),
    )
    edit_manifest(bundle, lambda raw: raw["caches"][0]["environment"].update(os="windows"))
    trusted = assert_agree(bundle, builder, prewarmer)
    assert not trusted["engine/a"] and trusted["engine/b"]
    rtxpack.add_cache(bundle, b"x" * 64, ENV_4090, engine="b")  # unsigned new cache
    assert_agree(bundle, builder, prewarmer)


@pytest.fixture(scope="module")
def signed(
    tmp_path_factory: pytest.TempPathFactory,
    two_engine_bundle: Path,
    builder: PrivateKey,
    prewarmer: PrivateKey,
) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("agree") / "signed.rtxpack"
    shutil.copyfile(two_engine_bundle, path)
    sign(path, builder)
    sign(path, prewarmer, role="caches")
    raw = read_raw(path)
    index = next(
        i
        for i, s in enumerate(raw["sections"])
        if s["kind"] == "signature" and s["name"].startswith("caches")
    )
    return {"path": path, "index": index, "envelope": section_bytes(path, index)}


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    where=st.sampled_from(PLACES),
    key=st.sampled_from(["payload", "keyid", "sig", "name", "digest", "role", "records", "x"]),
    value=JSON,
)
def test_agreement_on_mutated_signatures(
    signed: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
    builder: PrivateKey,
    prewarmer: PrivateKey,
    where: str,
    key: str,
    value: Any,
) -> None:
    mutated = mutate_envelope(signed["envelope"], where, key, value)
    path = tmp_path_factory.mktemp("m") / "b.rtxpack"
    shutil.copyfile(signed["path"], path)
    replace_section(path, signed["index"], mutated)
    assert_agree(path, builder, prewarmer)
