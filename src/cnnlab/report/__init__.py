"""`cnnlab report`: one self-contained HTML page for a set of runs (see build.py)."""

from cnnlab.report.build import ReportConfig, ReportResult, build_report

__all__ = ["ReportConfig", "ReportResult", "build_report"]
