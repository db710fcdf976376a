"""The bundle format: the container (header, aligned sections, digests, atomic writes), the typed
manifest with its limits, and the migrations from older format versions. docs/format.md is the
specification."""
