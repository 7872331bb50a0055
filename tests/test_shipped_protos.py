"""proto/ is enough for a client in another language (issue 8, item 11): the API files and the
google.rpc files that describe error details (``grpc-status-details-bin``) compile together
with nothing but protoc's own includes, and the google.rpc files are exactly the ones the server
encodes its errors with (googleapis-common-protos, which grpcio-status depends on)."""

from __future__ import annotations

import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import google.rpc
from google.protobuf import descriptor_pb2

PROTO = Path(__file__).resolve().parents[1] / "proto"
SHIPPED = ("status.proto", "error_details.proto")


def test_google_rpc_files_are_the_servers_own() -> None:
    installed = Path(next(iter(google.rpc.__path__)))
    for name in SHIPPED:
        assert (PROTO / "google" / "rpc" / name).read_bytes() == (installed / name).read_bytes()


def test_proto_dir_compiles_on_its_own(tmp_path: Path) -> None:
    sources = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    assert {f"google/rpc/{n}" for n in SHIPPED} <= set(sources)
    out = tmp_path / "all.binpb"
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO}",
         f"-I{files('grpc_tools') / '_proto'}",  # only google/protobuf/*: protoc's own
         f"--descriptor_set_out={out}", *sources],
        cwd=PROTO, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    messages = {f"{f.package}.{m.name}" for f in fds.file for m in f.message_type}
    assert {"google.rpc.Status", "google.rpc.ErrorInfo"} <= messages
