"""climb-etl: pipelines."""
