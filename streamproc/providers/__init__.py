"""Webhook providers, one module each; adding a provider is a module plus its schemas, or,
for one that signs with Standard Webhooks, a mapping file (``mapping.py``).

``decode`` maps any record of the raw log (the edge's or another producer's) through them."""

from functools import lru_cache
from pathlib import Path

from streamproc.providers import daily, openvidu
from streamproc.providers.base import Accepted, Provider, Verification
from streamproc.settings import PREFIX, Settings, SettingsError

PROVIDERS: dict[str, Provider] = {p.name: p for p in (daily.PROVIDER, openvidu.PROVIDER)}


def enabled_providers(settings: Settings) -> dict[str, Provider]:
    """The built-in providers, and the mapped one if ``settings`` names a mapping file;
    SettingsError naming the variable if that file cannot be used."""
    if settings.standard_webhooks_mapping is None:
        return PROVIDERS
    provider = _mapped(settings.standard_webhooks_mapping)
    return {**PROVIDERS, provider.name: provider}


@lru_cache(maxsize=8)
def _mapped(path: str) -> Provider:
    """Read once per process."""
    from streamproc.providers.mapping import MappingError, load_mapping, mapped_provider

    try:
        return mapped_provider(load_mapping(Path(path)))
    except MappingError as exc:
        raise SettingsError(f"{PREFIX}STANDARD_WEBHOOKS_MAPPING: {exc}") from None


__all__ = ["PROVIDERS", "Accepted", "Provider", "Verification", "enabled_providers"]
