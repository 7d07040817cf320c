"""Models of the ingestion module (they arrive with its issue)."""
