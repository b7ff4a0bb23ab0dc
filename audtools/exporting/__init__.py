"""An export, in running order: targeting, the ID pairs, the crash-safe publication, the flow."""
