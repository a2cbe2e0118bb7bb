"""Tests of infra/ and the audit flow."""
