"""Tests of pipelines.backends."""
