"""The files audtools reads and writes.

Audience Manager's (SPEC section 4): the catalog, outbound batches and their ``.info`` manifests,
onboarding files; and the profile files it loads, CSV or Parquet (section 7).
"""
