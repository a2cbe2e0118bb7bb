"""pipelines/backends."""
