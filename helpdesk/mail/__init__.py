"""Inbound e-mail: parse, thread, place on the timeline exactly once, or quarantine."""
