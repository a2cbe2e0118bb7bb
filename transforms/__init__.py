"""climb-etl: transforms."""
