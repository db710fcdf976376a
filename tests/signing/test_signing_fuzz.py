"""Mutated signature data (bytes and structure) only ever ends in RtxpackError or a refusal."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from signing_helpers import PLACES, mutate_envelope, read_raw, replace_section, section_bytes

from rtxpack._exceptions import RtxpackError
from rtxpack._format import container as _format
from rtxpack._signing import PrivateKey, TrustPolicy
from rtxpack._signing.bundle import sign, trust_report
from rtxpack._signing.envelope import Envelope

pytest_plugins = ["signing_fixtures"]


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, two_engine_bundle: Path) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("fuzz") / "signed.rtxpack"
    shutil.copyfile(two_engine_bundle, path)
    key = PrivateKey.generate()
    sign(path, key)
    index = next(i for i, s in enumerate(read_raw(path)["sections"]) if s["kind"] == "signature")
    return {"path": path, "key": key, "index": index, "envelope": section_bytes(path, index)}


def check(path: Path, key: PrivateKey, original: bytes, mutated: bytes) -> None:
    bf = _format.open_bundle_file(path)
    try:
        report = trust_report(bf, TrustPolicy(engines=[key.public_key], require="all"))
    except RtxpackError:
        return
    finally:
        bf.close()
    if report.trusted_by("engine/a"):
        # only possible if what is signed (payload, type, signature) is untouched
        a, b = Envelope.parse(original, "a"), Envelope.parse(mutated, "b")
        assert (a.payload, a.payload_type) == (b.payload, b.payload_type)
        assert any(s.sig == a.signatures[0].sig for s in b.signatures)


def mutate_bytes(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, pos, value in ops:
        if not buf:
            break
        pos %= len(buf)
        if kind == 0:
            buf[pos] ^= value or 1
        elif kind == 1:
            del buf[pos : pos + value % 64]
        else:
            buf[pos:pos] = bytes([value]) * (value % 8 + 1)
    return bytes(buf)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    ops=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 2**31), st.integers(0, 255)),
        min_size=1,
        max_size=6,
    )
)
def test_mutated_signature_bytes(
    signed: dict[str, Any], tmp_path_factory: pytest.TempPathFactory, ops: list[Any]
) -> None:
    path = tmp_path_factory.mktemp("m") / "b.rtxpack"
    shutil.copyfile(signed["path"], path)
    mutated = mutate_bytes(signed["envelope"], ops)
    replace_section(path, signed["index"], mutated)
    check(path, signed["key"], signed["envelope"], mutated)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    where=st.sampled_from(PLACES),
    key=st.text(max_size=12) | st.sampled_from(["payload", "sig", "keyid", "name", "role"]),
    value=JSON,
)
def test_mutated_signature_structure(
    signed: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
    where: str,
    key: str,
    value: Any,
) -> None:
    mutated = mutate_envelope(signed["envelope"], where, key, value)
    path = tmp_path_factory.mktemp("s") / "b.rtxpack"
    shutil.copyfile(signed["path"], path)
    replace_section(path, signed["index"], mutated)
    check(path, signed["key"], signed["envelope"], mutated)
