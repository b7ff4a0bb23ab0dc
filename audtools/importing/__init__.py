"""Importing a shared audience (SPEC §4 and §5), module by module in the order an import runs:

- :mod:`~audtools.importing.refusals`: every refusal, checked before anything is written;
- :mod:`~audtools.importing.state`: the drop's batches applied to the segment state;
- :mod:`~audtools.importing.members`: the members of the segment, decrypted and normalised;
- :mod:`~audtools.importing.reconcile`: the members reconciled with the profiles, and counted;
- :mod:`~audtools.importing.flow`: ``import_audience``, the steps above in one transaction;
- :mod:`~audtools.importing.result`: the ``ImportResult`` it gives back.

:mod:`~audtools.importing.batches` is ``audtools batches``, the drop's batches as a report.
"""
