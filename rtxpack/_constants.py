"""Where rtxpack keeps files, the environment variables it reads, and its defaults.

One cache root holds everything rtxpack keeps between runs::

    <cache root>/                      RTXPACK_CACHE_DIR, else the platform's user cache folder
        runtime-caches/                TensorRT-RTX runtime caches grown on this machine
        rebuilt/                       bundles rebuilt from source by load(..., rebuild=True)
        oci/                           the content store: registry blobs by digest (pull)

The user cache folder is ``platformdirs.user_cache_dir("rtxpack", appauthor=False)``:
``~/.cache/rtxpack`` on Linux, ``%LOCALAPPDATA%\\rtxpack\\Cache`` on Windows.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "APP_NAME",
    "CACHE_DIR_ENV",
    "LOCK_TIMEOUT_S",
    "MAX_CACHE_BYTES",
    "OCI_STORE_DIR",
    "REBUILT_DIR",
    "RUNTIME_CACHES_DIR",
    "TRUST_POLICY_ENV",
    "cache_root",
]

APP_NAME = "rtxpack"
#: Environment variable that moves the cache root.
CACHE_DIR_ENV = "RTXPACK_CACHE_DIR"
#: Environment variable naming a trust policy file (docs/signing.md); ``load`` and ``open``
#: apply it when no ``trust`` is given, so a fleet sets it once.
TRUST_POLICY_ENV = "RTXPACK_TRUST_POLICY"
#: Sub-folders of the cache root.
RUNTIME_CACHES_DIR = "runtime-caches"
REBUILT_DIR = "rebuilt"
#: Largest runtime cache rtxpack reads or writes (a sane bound; real caches are MBs).
MAX_CACHE_BYTES = 4 * 1024**3
#: How long a writer waits for another process's lock on a cache file, in seconds.
LOCK_TIMEOUT_S = 60.0
#: How long local_target() waits for nvidia-smi (asked only without NVML), in seconds.
NVIDIA_SMI_TIMEOUT_S = 5.0


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: ``cache_dir`` when given, else ``$RTXPACK_CACHE_DIR``, else the platform's
    per-user cache folder for rtxpack."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


# ---------------------------------------------------------------------------------------------
# OCI registries (push / pull)

#: Sub-folder of the cache root holding the content store.
OCI_STORE_DIR = "oci"
#: Username and password for registries that ask for credentials (override the auth files).
REGISTRY_USERNAME_ENV = "RTXPACK_REGISTRY_USERNAME"
REGISTRY_PASSWORD_ENV = "RTXPACK_REGISTRY_PASSWORD"
#: A Docker/Podman style auth file to read instead of the default ones.
REGISTRY_AUTH_FILE_ENV = "RTXPACK_REGISTRY_AUTH_FILE"
#: A PEM file of CA certificates to trust for registries (used when no ca_file is given).
REGISTRY_CA_FILE_ENV = "RTXPACK_REGISTRY_CA_FILE"
#: Largest OCI manifest accepted (distribution refuses to store larger ones as well).
REGISTRY_MAX_MANIFEST_BYTES = 4 * 1024**2
#: Largest token-service answer, error body or auth file read.
REGISTRY_MAX_SMALL_BYTES = 1024**2
#: Bytes per read or write while blobs stream.
REGISTRY_CHUNK_BYTES = 1024**2
#: Attempts of one request when the registry answers 5xx/429 or the connection drops.
REGISTRY_ATTEMPTS = 5
REGISTRY_BACKOFF_FIRST_S = 0.25
REGISTRY_BACKOFF_MAX_S = 4.0
#: Retry-After values above this are capped (a registry cannot park a client for hours).
REGISTRY_RETRY_AFTER_MAX_S = 10.0
REGISTRY_CONNECT_TIMEOUT_S = 10.0
REGISTRY_READ_TIMEOUT_S = 60.0
REGISTRY_MAX_REDIRECTS = 5
#: How long a pull waits for another process that downloads the same blob.
STORE_LOCK_TIMEOUT_S = 3600.0
