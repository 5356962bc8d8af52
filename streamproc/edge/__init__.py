"""The edge: verifies signed webhooks and publishes them verbatim to the raw topic."""
