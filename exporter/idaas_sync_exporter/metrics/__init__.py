"""Turning state into metrics: the metric catalogue, immutable snapshots, the exposition."""
