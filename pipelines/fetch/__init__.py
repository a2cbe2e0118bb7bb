"""Fetchers: one per access kind, behind one interface the source manifests name."""
