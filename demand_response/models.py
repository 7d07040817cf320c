"""Models of the demand_response module (they arrive with its issue)."""
