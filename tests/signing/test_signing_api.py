"""The public surface: rtxpack.sign / open / load / check / inspect with trust, and the CLI."""

from __future__ import annotations

import json
import stat
import warnings
from pathlib import Path
from typing import Any

import pytest

import rtxpack
from rtxpack._constants import TRUST_POLICY_ENV
from rtxpack._format import container
from rtxpack.cli import main

pytest_plugins = ["signing_fixtures"]


def policy_file(tmp_path: Path, **kw: Any) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(kw))
    return path


def test_open_refuses_naming_bundle_part_and_signer(
    bundle: Path, builder: rtxpack.PrivateKey, stranger: rtxpack.PrivateKey
) -> None:
    rtxpack.sign(bundle, stranger)
    policy = rtxpack.TrustPolicy(engines=[builder.public_key])
    with pytest.raises(rtxpack.UntrustedBundleError) as err:
        rtxpack.open(bundle, trust=policy)
    assert isinstance(err.value, rtxpack.RtxpackError)
    assert err.value.part == "engine/a" and err.value.path == str(bundle)
    assert str(err.value).startswith(str(bundle))
    assert stranger.key_id[:16] in str(err.value)
    with rtxpack.open(bundle) as b:  # no policy: opens, and says who signed
        assert [s.key_id for s in b.signatures().signers] == [stranger.key_id]
        assert b.trust is None


def test_the_environment_sets_the_policy_once(
    bundle: Path,
    tmp_path: Path,
    builder: rtxpack.PrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "builder.pub").write_bytes(builder.public_key.to_pem())
    monkeypatch.setenv(TRUST_POLICY_ENV, str(policy_file(tmp_path, engines=["builder.pub"])))
    with pytest.raises(rtxpack.UntrustedBundleError):
        rtxpack.open(bundle)
    rtxpack.open(bundle, trust=False).close()  # explicitly no policy
    assert rtxpack.inspect(bundle)["signers"] == []  # inspecting never refuses
    rtxpack.sign(bundle, builder)
    with rtxpack.open(bundle) as b:
        assert b.trust is not None and b.trust.ok


def test_load_refuses_before_any_engine_byte_is_read(
    bundle: Path,
    builder: rtxpack.PrivateKey,
    stranger: rtxpack.PrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("torch")
    rtxpack.sign(bundle, stranger)
    read: list[str] = []
    raw_view = container.BundleFile.raw_view

    def spy(self: container.BundleFile, section: Any) -> Any:
        read.append(section.kind)
        return raw_view(self, section)

    monkeypatch.setattr(container.BundleFile, "raw_view", spy)
    with pytest.raises(rtxpack.UntrustedBundleError, match="engine 'a'"):
        rtxpack.load(bundle, engine="a", trust=rtxpack.TrustPolicy(engines=[builder.public_key]))
    assert read == ["signature"]  # the stranger's signature, and nothing else


def test_untrusted_caches_are_dropped_with_a_warning(
    bundle: Path, builder: rtxpack.PrivateKey, prewarmer: rtxpack.PrivateKey
) -> None:
    rtxpack.sign(bundle, builder)
    policy = rtxpack.TrustPolicy(
        engines=[builder.public_key],
        caches=[prewarmer.public_key],
        require="all",
        untrusted_caches="drop",
    )
    with pytest.warns(rtxpack.UntrustedCacheWarning, match="ignoring runtime cache"):
        b = rtxpack.open(bundle, trust=policy)
    with b:
        assert b.manifest.caches == ()
        assert b.trust is not None and len(b.trust.dropped) == 2
        with pytest.raises(rtxpack.InvalidArgumentError):
            b.read_cache(next(iter(b.trust.dropped)))
    rtxpack.sign(bundle, prewarmer, role="caches")
    with warnings.catch_warnings():
        warnings.simplefilter("error", rtxpack.UntrustedCacheWarning)
        with rtxpack.open(bundle, trust=policy) as b:
            assert len(b.manifest.caches) == 2


def test_check_reports_signature_status_as_findings(
    bundle: Path,
    builder: rtxpack.PrivateKey,
    prewarmer: rtxpack.PrivateKey,
    stranger: rtxpack.PrivateKey,
) -> None:
    target = rtxpack.Target(
        trt_version="1.7.1.116",
        compute_capability="8.9",
        driver_version="580.65",
        os="linux",
        gpu_name="NVIDIA GeForce RTX 4090",
    )
    rtxpack.sign(bundle, builder)
    rtxpack.sign(bundle, stranger, role="caches")
    codes = {f.code for f in rtxpack.check(bundle, target, engine="a").findings}
    assert "signature.unchecked" in codes  # no policy: listed, not verified
    refuse = rtxpack.TrustPolicy(
        engines=[builder.public_key], caches=[prewarmer.public_key], require="all"
    )
    report = rtxpack.check(bundle, target, engine="a", trust=refuse)
    codes = {f.code for f in report.findings}
    assert {"signature.trusted", "signature.untrusted", "signature.refused"} <= codes
    assert not report.ok and report.verdict("a").status == "cannot_run"
    drop = rtxpack.TrustPolicy(
        engines=[builder.public_key],
        caches=[prewarmer.public_key],
        require="all",
        untrusted_caches="drop",
    )
    report = rtxpack.check(bundle, target, engine="a", trust=drop)
    assert "signature.cache_dropped" in {f.code for f in report.findings}
    assert report.ok  # loads: without the dropped cache, as a bundle without caches does
    assert "cache.match" not in {f.code for f in report.findings}
    assert "cache.match" in {f.code for f in rtxpack.check(bundle, target, engine="a").findings}


def test_cli_keygen_sign_verify_inspect(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "builder.key"
    assert main(["keygen", str(key)]) == 0
    out = capsys.readouterr().out
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    secret = key.read_text().splitlines()[1]
    assert secret not in out and "PRIVATE" not in out
    assert main(["keygen", str(key)]) == 1  # never overwritten
    assert main(["verify", str(bundle), "--trust", f"{key}.pub"]) == 1
    assert "refusing engine 'a'" in capsys.readouterr().err
    assert main(["sign", str(bundle), "--key", str(key)]) == 0
    assert "engine 'a'" in capsys.readouterr().out
    assert main(["verify", str(bundle), "--trust", f"{key}.pub"]) == 0
    assert "role engines, trusted" in capsys.readouterr().out
    assert main(["verify", str(bundle), "--trust", f"{key}.pub", "--require", "all"]) == 1
    assert "runtime cache" in capsys.readouterr().err
    assert main(["inspect", str(bundle), "--json"]) == 0
    (signer,) = json.loads(capsys.readouterr().out)["signers"]
    assert signer["role"] == "engines" and signer["status"] == "unchecked"
    assert main(["inspect", str(bundle)]) == 0
    assert "signature engines" in capsys.readouterr().out
    assert main(["verify", str(bundle), "--policy", "x", "--trust", "y"]) == 2
    assert main(["sign", str(bundle), "--key", f"{key}.pub"]) == 1  # a public key cannot sign


@pytest.mark.parametrize(
    "flags",
    [
        ["--trust-caches", "c.pub"],
        ["--require", "all"],
        ["--untrusted-caches", "drop"],
        ["--policy", "p.json", "--trust", "k.pub"],
        ["--policy", "p.json", "--trust-caches", "c.pub"],
    ],
)
@pytest.mark.parametrize("command", ["verify", "check"])
def test_cli_trust_flags_that_do_not_go_together_are_usage_errors(
    bundle: Path, command: str, flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 with one line, before any key or policy file is read (none of them exists)."""
    assert main([command, str(bundle), *flags]) == 2
    captured = capsys.readouterr()
    assert not captured.out
    (line,) = captured.err.splitlines()
    assert line.startswith(f"rtxpack {command}: error: --")


def test_cli_says_which_signature_a_rewrite_drops(
    bundle: Path, prewarmer: rtxpack.PrivateKey, capsys: pytest.CaptureFixture[str]
) -> None:
    rtxpack.sign(bundle, prewarmer, role="caches")
    for cache in rtxpack.list_caches(bundle):
        assert main(["cache", "remove", str(bundle), cache.id]) == 0
    err = capsys.readouterr().err
    assert f"rtxpack: warning: dropped signature 'caches-{prewarmer.key_id[:16]}'" in err


def test_cli_check_reports_signatures(
    bundle: Path,
    builder: rtxpack.PrivateKey,
    stranger: rtxpack.PrivateKey,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rtxpack.sign(bundle, stranger)
    (tmp_path / "builder.pub").write_bytes(builder.public_key.to_pem())
    target = ["--trt-version", "1.7.1.116", "--cc", "8.9", "--driver", "580.95", "--os", "linux"]

    def status_of_a(report: dict[str, Any]) -> str:
        return str(next(v["status"] for v in report["engines"] if v["engine"] == "a"))

    main(["check", str(bundle), *target, "--json"])  # engine b targets another GPU: exit 1
    (report,) = json.loads(capsys.readouterr().out)
    assert "signature.unchecked" in {f["code"] for f in report["findings"]}
    assert status_of_a(report) in ("loads", "loads_cold")  # no policy: signers only listed
    trust = ["--trust", str(tmp_path / "builder.pub")]
    assert main(["check", str(bundle), *target, *trust, "--json"]) == 1
    (report,) = json.loads(capsys.readouterr().out)
    codes = {f["code"] for f in report["findings"]}
    assert {"signature.untrusted", "signature.refused"} <= codes
    assert status_of_a(report) == "cannot_run"  # the policy refuses the bundle
    assert main(["check", str(bundle), *target, *trust]) == 1
    assert "signature.refused" in capsys.readouterr().out


def test_cli_warnings_carry_one_rtxpack_prefix(
    bundle: Path,
    tmp_path: Path,
    builder: rtxpack.PrivateKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # UntrustedCacheWarning's text starts with "rtxpack: " for Python users; the CLI printed
    # "rtxpack: warning: rtxpack: ignoring runtime cache(s) ..."
    rtxpack.sign(bundle, builder)
    pub = tmp_path / "builder.pub"
    pub.write_bytes(builder.public_key.to_pem())
    args = ["verify", str(bundle), "--trust", str(pub), "--require", "all"]
    assert main([*args, "--untrusted-caches", "drop"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("rtxpack: warning: ignoring runtime cache(s) "), err
    assert "rtxpack: rtxpack" not in err and "warning: rtxpack:" not in err
