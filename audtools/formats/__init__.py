"""Readers of the files audtools exchanges with Audience Manager (see SPEC section 4)."""
