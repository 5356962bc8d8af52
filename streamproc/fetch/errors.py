"""Why a download failed, and whether trying again could help."""

from __future__ import annotations


class FetchError(Exception):
    """A download that did not complete. ``permanent``: trying again at once cannot help
    (the fetcher's own retries stop). ``may_heal``: trying again later can (the object may
    appear, the permission be fixed, S3 come back), so the request waits in a retry topic."""

    permanent = False
    may_heal = True


class TransientFetchError(FetchError):
    """5xx, timeouts, resets, a short or corrupt body: retried with backoff."""


class PermanentFetchError(FetchError):
    """403/404 and the like: retrying cannot help."""

    permanent = True


class UnsafeDestination(PermanentFetchError):
    """A key or recording id would write outside the sink (``..``, absolute path, NUL)."""

    may_heal = False


class NothingToFetch(PermanentFetchError):
    """The finished recording names no object (no S3 key, no tracks, no template value)."""

    may_heal = False
