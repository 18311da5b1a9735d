"""Reports of what changed: the frames the notebooks show, charts, the HTML page.

frames.py   the period, the change feed and its summaries (polars frames)
charts.py   altair charts rendered to static SVG
html.py     the self-contained HTML report (`modelwatch report`)
"""

from pipeline.report.frames import Period, notebook_period, period
from pipeline.report.html import build_report, write_report

__all__ = ["Period", "build_report", "notebook_period", "period", "write_report"]
