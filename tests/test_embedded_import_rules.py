"""The embedded handle's place in the layers: it speaks the client's public vocabulary
(``runtime_client`` and ``runtime_client.errors``) over the core, and never goes through the gRPC
edge (``runtime_server.grpc``): nothing in-process is converted to protobuf and back. (It does
load grpc, as a module, because the ``runtime_client`` package holds the gRPC client too; it opens
no socket.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_embedded_handle_bypasses_the_grpc_edge() -> None:
    code = (
        "import json, sys\nimport runtime_server.embedded\nprint(json.dumps(sorted(sys.modules)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout))
    assert {"runtime_server.embedded", "runtime_client.errors", "runtime_server.runtime"} <= loaded
    assert not [
        m for m in loaded if m == "runtime_server.grpc" or m.startswith("runtime_server.grpc.")
    ]
