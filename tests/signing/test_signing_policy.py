"""TrustPolicy: construction, policy files, the environment variable, and their refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtxpack._constants import TRUST_POLICY_ENV
from rtxpack._exceptions import InvalidArgumentError
from rtxpack._signing import TrustPolicy, generate_key


@pytest.fixture()
def keys(tmp_path: Path) -> Path:
    generate_key(tmp_path / "builder")
    generate_key(tmp_path / "prewarm", algorithm="ecdsa-p256")
    return tmp_path


def test_keys_from_paths_pem_text_and_objects(keys: Path) -> None:
    builder = (keys / "builder.pub").read_text()
    policy = TrustPolicy(engines=[keys / "builder.pub", builder], caches=str(keys / "prewarm.pub"))
    assert len(policy.engines) == 1  # the same key twice is one key
    assert policy.caches[0].algorithm == "ecdsa-p256"
    assert policy.key("engines", policy.engines[0].key_id) == policy.engines[0]
    assert policy.key("caches", policy.engines[0].key_id) is None
    with pytest.raises(AttributeError):
        policy.require = "all"  # type: ignore[misc]


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"require": "everything"}, "require"),
        ({"untrusted_caches": "ignore"}, "untrusted_caches"),
        ({"engines": []}, "at least one trusted engines key"),
        ({"engines": [42]}, "expected a PublicKey"),
    ],
)
def test_invalid_policies(keys: Path, kw: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"engines": [keys / "builder.pub"], **kw}
    with pytest.raises(InvalidArgumentError, match=match):
        TrustPolicy(**args)  # type: ignore[arg-type]


def test_policy_file_resolves_key_paths_next_to_it(keys: Path, tmp_path: Path) -> None:
    (keys / "policy.json").write_text(
        json.dumps(
            {
                "engines": ["builder.pub"],
                "caches": ["prewarm.pub"],
                "require": "all",
                "untrusted_caches": "drop",
            }
        )
    )
    policy = TrustPolicy.from_file(keys / "policy.json")
    assert (policy.require, policy.untrusted_caches) == ("all", "drop")
    assert policy.to_dict()["engines"] == [policy.engines[0].key_id]
    env = {TRUST_POLICY_ENV: str(keys / "policy.json")}
    assert TrustPolicy.from_env(env) == policy
    assert TrustPolicy.from_env({}) is None
    assert TrustPolicy.from_env({TRUST_POLICY_ENV: ""}) is None


@pytest.mark.parametrize(
    "content,match",
    [
        ("{", "not JSON"),
        ("[]", "JSON object"),
        ('{"engines": ["builder.pub"], "requires": "all"}', "unknown trust policy field"),
        ('{"engines": "builder.pub"}', "list of key file paths"),
        ('{"engines": ["missing.pub"]}', "no such key file"),
        ('{"engines": ["builder"]}', "is a private key"),
        ('{"caches": ["prewarm.pub"]}', "at least one trusted engines key"),
    ],
)
def test_bad_policy_files(keys: Path, content: str, match: str) -> None:
    (keys / "policy.json").write_text(content)
    with pytest.raises(InvalidArgumentError, match=match) as err:
        TrustPolicy.from_file(keys / "policy.json")
    assert "policy.json" in str(err.value)
    with pytest.raises(InvalidArgumentError, match=TRUST_POLICY_ENV):
        TrustPolicy.from_env({TRUST_POLICY_ENV: str(keys / "policy.json")})


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="cannot read trust policy"):
        TrustPolicy.from_file(tmp_path / "nope.json")
