"""The domain, with no I/O: canonical events, the fold, derived messages, stall decisions and
the JSON Schemas they follow. The worker and replay both derive through these modules."""
