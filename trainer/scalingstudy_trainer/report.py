"""Reporting a trial's result: the SDK's implementation (`scalingstudy_sdk.report`), the one
every trainer shares. Kept importable here for trainers written against earlier releases."""

from __future__ import annotations

from scalingstudy_sdk.report import push_result, report_result, write_result_file

__all__ = ["push_result", "report_result", "write_result_file"]
