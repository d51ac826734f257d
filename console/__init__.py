"""The DPO web console: an adapter over the core (imports only rightsdesk)."""
