"""The HTTP side: /metrics and the other endpoints, the web configuration, connection limits."""
