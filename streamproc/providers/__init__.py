"""Webhook providers, one module each; adding a provider is a module plus its schemas, or,
for one that signs with Standard Webhooks, a mapping file (``mapping.py``).

``decode`` maps any record of the raw log (the edge's or another producer's) through them."""

from pathlib import Path

from streamproc.providers import daily, openvidu
from streamproc.providers.base import Accepted, Provider, Verification
from streamproc.settings import Settings

PROVIDERS: dict[str, Provider] = {p.name: p for p in (daily.PROVIDER, openvidu.PROVIDER)}


def enabled_providers(settings: Settings) -> dict[str, Provider]:
    """The built-in providers, and the mapped one if ``settings`` names a mapping file."""
    if settings.standard_webhooks_mapping is None:
        return PROVIDERS
    from streamproc.providers.mapping import load_mapping, mapped_provider

    provider = mapped_provider(load_mapping(Path(settings.standard_webhooks_mapping)))
    return {**PROVIDERS, provider.name: provider}


__all__ = ["PROVIDERS", "Accepted", "Provider", "Verification", "enabled_providers"]
