"""Run reports: Markdown tables and matplotlib plots, rendered to .md and .html files.

``run_report.write_report`` writes a run's report (``report.md``/``.html``); ``ablation`` turns the
ablations' variants into rows and ``ablation.md``. Import them from their modules: they read the
catalog and the run folder, while this package's top level is only rendering.
"""

from refinery.tasks.report.render import markdown_table, render_html
from refinery.tasks.report.plots import bar_chart, interval_chart, s_curve

__all__ = ["bar_chart", "interval_chart", "markdown_table", "render_html", "s_curve"]
