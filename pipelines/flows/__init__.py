"""pipelines/flows."""
