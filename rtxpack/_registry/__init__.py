"""OCI distribution for bundles: references, a streaming registry client, the content store."""
