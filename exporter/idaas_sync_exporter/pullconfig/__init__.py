"""Reading and changing an identity provider's inbound-sync (UD pull) configuration."""
