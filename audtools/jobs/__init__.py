"""Sync jobs: papermill runs of parameterised notebooks, the run history, reports and their rendering."""
