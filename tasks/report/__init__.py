"""Run reports: Markdown tables and matplotlib plots, rendered to .md and .html files."""

from refinery.tasks.report.render import markdown_table, render_html
from refinery.tasks.report.plots import bar_chart, interval_chart, s_curve

__all__ = ["bar_chart", "interval_chart", "markdown_table", "render_html", "s_curve"]
