"""Errors whose exit status tells the operator whether a retry can help."""

from __future__ import annotations


class ConfigError(Exception):
    """A trial that cannot work as configured (unknown task, bad option, missing data):
    exits with EXIT_CONFIG_ERROR so the Job fails at once instead of retrying."""
