"""The Runtime core: pure asyncio — no grpc, no protobuf."""

from __future__ import annotations

from runtime_server.runtime._allocation import Claim
from runtime_server.runtime._bundles import BundleContent, ConfigBundles
from runtime_server.runtime._eventlog import EventLog, Subscription
from runtime_server.runtime._lifetime import UsageSummary
from runtime_server.runtime._observer import RuntimeCounters, RuntimeObserver
from runtime_server.runtime._policy import (
    CAPABILITY_TOOLS,
    HostPolicy,
    effective_tools,
    overlaps,
    real_parts,
)
from runtime_server.runtime._profiles import (
    BUILTIN_PROVIDER,
    BUILTIN_TOOLS,
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
    RuntimeCloseError,
    RuntimeInfo,
    RuntimeState,
    ToolsFactory,
    limits_from,
)
from runtime_server.runtime._storewatch import StoreState
from runtime_server.runtime._tools import MAX_SCANNED_ENTRIES, builtin_tools

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
    "RuntimeCloseError",
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
    # the built-in tools and the host's workspace rules (what a worker may touch, and with what)
    "BUILTIN_PROVIDER",
    "BUILTIN_TOOLS",
    "MAX_SCANNED_ENTRIES",
    "builtin_tools",
    "effective_tools",
    "overlaps",
    "real_parts",
]
