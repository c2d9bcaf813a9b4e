"""The report: figures (plots) and the HTML page that gathers them (page)."""
