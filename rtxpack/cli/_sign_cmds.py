"""``rtxpack keygen`` and ``rtxpack sign``, and the trust-policy flags of verify and check."""

from __future__ import annotations

import argparse
import os
from typing import Any

from .._bundle import Trust
from .._exceptions import InvalidArgumentError
from .._signing import (
    ALGORITHMS,
    ROLES,
    PrivateKey,
    PublicKey,
    TrustPolicy,
    describe_part,
    generate_key,
)
from .._signing.bundle import sign

__all__ = ["add_trust_args", "register", "trust_from_args", "trust_usage_error"]


def add_trust_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "trust policy (docs/signing.md; default: the file named by RTXPACK_TRUST_POLICY, if set)"
    )
    g.add_argument(
        "--trust",
        action="append",
        metavar="KEY.pub",
        help="a public key trusted to sign engines, sources, samples and files (repeatable)",
    )
    g.add_argument(
        "--trust-caches",
        action="append",
        metavar="KEY.pub",
        help="a public key trusted to sign runtime caches (repeatable)",
    )
    g.add_argument(
        "--require",
        choices=["engines", "all"],
        help="what must be signed: engines and sources (default), or every part",
    )
    g.add_argument(
        "--untrusted-caches",
        choices=["refuse", "drop"],
        help="with --require all: refuse the bundle (default) or ignore untrusted caches",
    )
    g.add_argument("--policy", metavar="FILE", help="a trust policy file (JSON) instead")


def trust_usage_error(args: argparse.Namespace) -> str | None:
    """What is wrong with the trust flags together (cli.main: a usage error), or None."""
    if getattr(args, "policy", None) is None and not hasattr(args, "trust"):
        return None  # a command without trust flags
    flags = (args.trust, args.trust_caches, args.require, args.untrusted_caches)
    if args.policy is not None and any(flags):
        return (
            "--policy FILE cannot be combined with --trust/--trust-caches/--require/"
            "--untrusted-caches: give either the file or the flags"
        )
    if args.policy is None and any(flags) and not args.trust:
        return (
            "--trust-caches/--require/--untrusted-caches need --trust KEY.pub "
            "(the public key that signs engines)"
        )
    return None


def trust_from_args(args: argparse.Namespace) -> Trust:
    flags = (args.trust, args.trust_caches, args.require, args.untrusted_caches)
    if args.policy is not None:
        if any(flags):
            raise InvalidArgumentError(str(trust_usage_error(args)))
        return str(args.policy)
    if not any(flags):
        return None  # RTXPACK_TRUST_POLICY, if set
    if not args.trust:
        raise InvalidArgumentError(str(trust_usage_error(args)))
    return TrustPolicy(
        engines=tuple(PublicKey.load(p) for p in args.trust),
        caches=tuple(PublicKey.load(p) for p in args.trust_caches or ()),
        require=args.require or "engines",
        untrusted_caches=args.untrusted_caches or "refuse",
    )


def _password(var: str | None) -> bytes | None:
    """The password in environment variable ``var`` (never on the command line)."""
    if var is None:
        return None
    value = os.environ.get(var)
    if not value:
        raise InvalidArgumentError(f"--password-env {var}: it is not set, or empty")
    return value.encode()


def _keygen(args: argparse.Namespace) -> int:
    public = generate_key(
        args.key,
        algorithm=args.algorithm,
        overwrite=args.force,
        password=_password(args.password_env),
    )
    print(f"wrote {args.key} (private key, mode 0600: keep it secret) and {args.key}.pub")
    print(f"key id {public.key_id} ({public.algorithm})")
    return 0


def _sign(args: argparse.Namespace) -> int:
    key = PrivateKey.load(args.key, _password(args.password_env))
    signed = sign(args.bundle, key, role=args.role, output=args.output)
    parts = ", ".join(describe_part(p) for p in signed.parts)
    print(
        f"signed {args.output or args.bundle} as {args.role} with {key.algorithm} key "
        f"{key.key_id[:16]}: {parts}"
    )
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("keygen", help="make a signing key pair (private key 0600, KEY.pub)")
    p.add_argument("key", metavar="KEY", help="where to write the private key; KEY.pub beside it")
    p.add_argument("--algorithm", choices=ALGORITHMS, default="ed25519")
    p.add_argument("--force", action="store_true", help="overwrite existing key files")
    p.add_argument(
        "--password-env",
        metavar="VAR",
        help="encrypt the private key with the password in this environment variable",
    )
    p.set_defaults(func=_keygen)

    p = sub.add_parser(
        "sign", help="sign a bundle's engines (builder) or runtime caches (prewarm machine)"
    )
    p.add_argument("bundle")
    p.add_argument("--key", required=True, metavar="KEY", help="the private key (PEM)")
    p.add_argument(
        "--role",
        choices=ROLES,
        default="engines",
        help="engines: engines, sources, samples and files (default); caches: runtime caches",
    )
    p.add_argument("-o", "--output", help="write the signed bundle here (default: in place)")
    p.add_argument(
        "--password-env",
        metavar="VAR",
        help="environment variable holding the password of an encrypted key",
    )
    p.set_defaults(func=_sign)
