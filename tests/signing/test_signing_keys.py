"""Keys: Ed25519 and ECDSA P-256 PEM files, key ids, keygen's file modes and refusals."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from rtxpack._exceptions import InvalidArgumentError
from rtxpack._signing import PrivateKey, PublicKey, generate_key


@pytest.mark.parametrize("algorithm", ["ed25519", "ecdsa-p256"])
def test_keygen_writes_a_0600_private_key_and_a_public_key(tmp_path: Path, algorithm: str) -> None:
    old = os.umask(0)  # even with a permissive umask the private key is 0600
    try:
        pub = generate_key(tmp_path / "k", algorithm=algorithm)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "k.pub").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
    priv = PrivateKey.load(tmp_path / "k")
    assert priv.algorithm == pub.algorithm == algorithm
    assert PublicKey.load(tmp_path / "k.pub") == pub == priv.public_key
    # the key id is the SHA-256 of the DER SubjectPublicKeyInfo
    der = serialization.load_pem_public_key((tmp_path / "k.pub").read_bytes()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert pub.key_id == hashlib.sha256(der).hexdigest()
    sig = priv.sign(b"message")
    assert pub.verify(sig, b"message")
    assert not pub.verify(sig, b"messagf")
    assert not pub.verify(b"\x00" * len(sig), b"message")
    assert not pub.verify(b"", b"message")
    # no key material in repr/str
    pem_body = (tmp_path / "k").read_text().splitlines()[1]
    assert pem_body not in repr(priv) and pem_body not in str(priv)


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    generate_key(tmp_path / "k")
    before = (tmp_path / "k").read_bytes()
    with pytest.raises(InvalidArgumentError, match="exists"):
        generate_key(tmp_path / "k")
    assert (tmp_path / "k").read_bytes() == before
    (tmp_path / "k2.pub").write_text("x")
    with pytest.raises(InvalidArgumentError, match="exists"):
        generate_key(tmp_path / "k2")
    assert not (tmp_path / "k2").exists()
    generate_key(tmp_path / "k", overwrite=True)
    assert (tmp_path / "k").read_bytes() != before


def test_keygen_into_a_missing_folder_is_an_rtxpack_error(tmp_path: Path) -> None:
    from rtxpack._exceptions import RtxpackError

    with pytest.raises(RtxpackError):
        generate_key(tmp_path / "nope" / "k")


def _pem_private(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize(
    "key,what",
    [
        (rsa.generate_private_key(65537, 2048), "RSA"),
        (ec.generate_private_key(ec.SECP384R1()), "secp384r1"),
    ],
)
def test_other_key_types_are_refused(tmp_path: Path, key: object, what: str) -> None:
    (tmp_path / "k").write_bytes(_pem_private(key))
    with pytest.raises(InvalidArgumentError, match="Ed25519 or ECDSA P-256") as err:
        PrivateKey.load(tmp_path / "k")
    assert what.lower() in str(err.value).lower()
    pub = key.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(InvalidArgumentError, match="Ed25519 or ECDSA P-256"):
        PublicKey.from_pem(pub)


def test_bad_key_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="no such key file"):
        PublicKey.load(tmp_path / "missing.pub")
    (tmp_path / "junk").write_bytes(b"not a key")
    with pytest.raises(InvalidArgumentError, match="not a PEM public key"):
        PublicKey.load(tmp_path / "junk")
    with pytest.raises(InvalidArgumentError, match="not a usable PEM private key"):
        PrivateKey.load(tmp_path / "junk")
    (tmp_path / "big").write_bytes(b"x" * (65 * 1024))
    with pytest.raises(InvalidArgumentError, match="larger than"):
        PublicKey.load(tmp_path / "big")
    generate_key(tmp_path / "k")
    # a private key given where a public key is expected: refused, and not echoed
    with pytest.raises(InvalidArgumentError, match="is a private key") as err:
        PublicKey.load(tmp_path / "k")
    assert "BEGIN" not in str(err.value)


def test_encrypted_private_keys_need_their_password(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    (tmp_path / "k").write_bytes(pem)
    with pytest.raises(InvalidArgumentError, match="encrypted"):
        PrivateKey.load(tmp_path / "k")
    with pytest.raises(InvalidArgumentError):
        PrivateKey.load(tmp_path / "k", password=b"wrong")
    assert PrivateKey.load(tmp_path / "k", password=b"secret").algorithm == "ed25519"


def test_keygen_can_encrypt_the_private_key(tmp_path: Path) -> None:
    pub = generate_key(tmp_path / "k", password=b"s3cret")
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "k").read_bytes()
    with pytest.raises(InvalidArgumentError, match="encrypted"):
        PrivateKey.load(tmp_path / "k")
    assert PrivateKey.load(tmp_path / "k", password=b"s3cret").public_key == pub
    with pytest.raises(InvalidArgumentError, match="empty password"):
        generate_key(tmp_path / "k2", password=b"")


def test_cli_keygen_and_sign_with_a_password_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rtxpack.cli import main

    monkeypatch.setenv("KEY_PASSWORD", "s3cret")
    key = tmp_path / "k"
    assert main(["keygen", str(key), "--password-env", "KEY_PASSWORD"]) == 0
    assert "s3cret" not in capsys.readouterr().out
    assert PrivateKey.load(key, password=b"s3cret").algorithm == "ed25519"
    assert main(["keygen", str(tmp_path / "x"), "--password-env", "NOT_SET_ANYWHERE"]) == 1
    assert "not set" in capsys.readouterr().err
