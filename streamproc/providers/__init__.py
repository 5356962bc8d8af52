"""Webhook providers, one module each; adding a provider is a module plus its schemas.

``decode`` maps any record of the raw log (the edge's or another producer's) through them."""

from streamproc.providers import daily, openvidu
from streamproc.providers.base import Accepted, Provider, Verification

PROVIDERS: dict[str, Provider] = {p.name: p for p in (daily.PROVIDER, openvidu.PROVIDER)}

__all__ = ["PROVIDERS", "Accepted", "Provider", "Verification"]
