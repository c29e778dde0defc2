"""Alerting and recording rules: declared once, generated for Prometheus and the Prometheus Operator."""
