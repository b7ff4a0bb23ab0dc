"""Identifier rules over whole Arrow columns: visitor IDs, normalising, phones, SHA-256, AES.

No database and no files: every function takes and returns Arrow arrays."""
