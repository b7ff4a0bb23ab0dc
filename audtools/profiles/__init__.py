"""Profiles and their visitor IDs: loading them from CSV or Parquet, and the derived-ID cache."""
