"""One module per access kind; :data:`pipelines.fetch.source.FETCHERS` maps host kinds to them."""
