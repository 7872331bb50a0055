"""The Backend service: a RuntimeRegistry over an embedded Runtime and remote ones, the
Companion worker, a JSON + SSE HTTP API and the web console (Starlette + uvicorn).

Nothing imports this package; it imports ``runtime_client`` and ``runtime_server``. Run it with
``worker-backend serve --config backend.toml`` or ``make console``. The ASGI app is
``backend.app.create_app(config)``; this module keeps to the configuration so that reading a
config does not start importing the server stack.
"""

from __future__ import annotations

from backend.config import BackendConfig, BackendConfigError, RemoteRuntime, load_config

__all__ = ["BackendConfig", "BackendConfigError", "RemoteRuntime", "load_config"]
