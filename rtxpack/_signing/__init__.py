"""Signed bundles and trust policies (docs/signing.md).

keys.py      Ed25519 / ECDSA P-256 PEM keys, key ids, keygen
envelope.py  DSSE envelopes carrying in-toto Statements; strict parsing of untrusted bytes
parts.py     the signable parts of a bundle, what a signer signs, matching parts to statements
policy.py    TrustPolicy: trusted keys per role, what must be signed
verify.py    signatures x parts x policy -> TrustReport
sign.py      new signature sections; which signatures a rewritten bundle keeps
"""

from .envelope import DEFAULT_SIGNATURE_LIMITS, ROLES, SignatureLimits
from .keys import ALGORITHMS, PrivateKey, PublicKey, generate_key
from .parts import describe_part
from .policy import TrustPolicy
from .sign import SECTION_KIND, SignedSection, sign_manifest, why_stale
from .verify import Signer, TrustReport, evaluate

__all__ = [
    "ALGORITHMS",
    "DEFAULT_SIGNATURE_LIMITS",
    "ROLES",
    "SECTION_KIND",
    "PrivateKey",
    "PublicKey",
    "SignatureLimits",
    "SignedSection",
    "Signer",
    "TrustPolicy",
    "TrustReport",
    "describe_part",
    "evaluate",
    "generate_key",
    "sign_manifest",
    "why_stale",
]
