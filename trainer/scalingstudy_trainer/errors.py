"""Errors whose exit status tells the operator whether a retry can help."""

from __future__ import annotations


class ConfigError(Exception):
    """A trial that cannot work as configured (unknown task, bad option, missing data):
    exits with EXIT_CONFIG_ERROR so the Job fails at once instead of retrying."""


class DivergedError(ConfigError):
    """A trial whose loss became NaN or infinite before any finite evaluation: a retry with
    the same settings diverges again (the learning rate or the data is the cause), so it
    fails at once like a configuration error, with a message that says where."""
