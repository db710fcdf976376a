"""Attacks found in the review of issue 11: each gets an untrusted byte past a trust policy on the
code before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from independent_verifier import trusted_parts
from signing_helpers import read_raw, replace_section, section_bytes

import rtxpack
from rtxpack._exceptions import UntrustedBundleError
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
