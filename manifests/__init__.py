"""climb-etl: manifests."""
