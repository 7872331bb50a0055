"""The Runtime core: pure asyncio — no grpc, no protobuf."""

from __future__ import annotations

from runtime_server.runtime._allocation import Claim
from runtime_server.runtime._bundles import BundleContent, ConfigBundles
from runtime_server.runtime._eventlog import EventLog, Subscription
from runtime_server.runtime._lifetime import UsageSummary
from runtime_server.runtime._observer import RuntimeCounters, RuntimeObserver
from runtime_server.runtime._policy import CAPABILITY_TOOLS, HostPolicy
from runtime_server.runtime._profiles import (
    PROVIDER_KINDS,
    Config,
    ConfigError,
    Profile,
    ProviderConfig,
    default_config,
    load_config,
    parse_config,
)
from runtime_server.runtime._runtime import (
    FEATURES,
    VERSION,
    Accepted,
    Created,
    EventsPage,
    ProviderFactory,
    Runtime,
    RuntimeInfo,
    RuntimeState,
    ToolsFactory,
    limits_from,
)
from runtime_server.runtime._storewatch import StoreState

__all__ = [
    "FEATURES",
    "HostPolicy",
    "PROVIDER_KINDS",
    "VERSION",
    "Accepted",
    "BundleContent",
    "CAPABILITY_TOOLS",
    "Claim",
    "Config",
    "ConfigBundles",
    "ConfigError",
    "Created",
    "EventLog",
    "EventsPage",
    "Profile",
    "ProviderConfig",
    "ProviderFactory",
    "Runtime",
    "RuntimeCounters",
    "RuntimeInfo",
    "RuntimeObserver",
    "RuntimeState",
    "StoreState",
    "Subscription",
    "ToolsFactory",
    "UsageSummary",
    "default_config",
    "limits_from",
    "load_config",
    "parse_config",
]
