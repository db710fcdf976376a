"""Runtime caches: the fit rule (fit), choosing one for a load (selection), the per-user local
cache (local), adding and removing caches in bundles (edit) and prewarming them on a GPU
(prewarm)."""
