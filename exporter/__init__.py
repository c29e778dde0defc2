"""Prometheus exporter for Alibaba Cloud IDaaS (EIAM 2021-12-01) synchronization jobs."""

__version__ = "0.1.0"
# Where the project and its documentation live (runbook links, the landing page).
PROJECT_URL = "https://github.com/idaas-sync-exporter/idaas-sync-exporter"
