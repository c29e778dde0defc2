"""Prometheus exporter for Alibaba Cloud IDaaS (EIAM 2021-12-01) synchronization jobs."""

__version__ = "0.1.0"
