"""An import, in running order: the drop scan, the segment state, the members, reconciliation, the flow."""
