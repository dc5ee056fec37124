"""Workflows of several runs built on ``obliviate.unlearn`` (one module each)."""
