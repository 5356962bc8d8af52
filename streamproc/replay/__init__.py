"""``streamproc replay``: derive again from any offset of the raw log, for backfills."""
