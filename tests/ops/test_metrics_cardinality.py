"""Label values a caller chooses must not grow the metrics without bound: a config bundle's
profile names any model string, and each one used to add its own series for good. A real server
with the metrics endpoint on port 0, driven by the real client, scraped over HTTP and parsed."""

from __future__ import annotations

from test_metrics_endpoint import Samples, scrape

from runtime_client import ConfigBundleRef, RunState, RuntimeClient
from runtime_server import Runtime
from runtime_server.grpc import OpsOptions, start_server

MAX_MODEL_SERIES = 64  # (provider, model) pairs with their own series (README "Metrics")
OTHER_MODEL = "other"


BOUND = 30.0  # seconds: a safety net on a shared machine, never a speed assertion
PER_BUNDLE = 40


def total(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def bundle(first: int) -> bytes:
    lines = []
    for i in range(first, first + PER_BUNDLE):
        lines += [f"[profiles.p{i}]", 'provider = "builtin"', f'model = "caller-model-{i}"', ""]
    return "\n".join(lines).encode()


async def test_caller_chosen_model_names_are_bounded_as_labels() -> None:
    server = await start_server(
        Runtime(), "127.0.0.1:0", ops=OpsOptions(metrics_listen="127.0.0.1:0")
    )
    client = RuntimeClient(f"127.0.0.1:{server.port}")
    try:
        count = 0
        for first in range(0, 2 * PER_BUNDLE, PER_BUNDLE):  # more models than the bound
            put = await client.put_bundle(f"b{first}", bundle(first))
            ref = ConfigBundleRef(put.bundle.id, put.bundle.digest)
            for i in range(first, first + PER_BUNDLE):
                created = await client.create_worker(
                    profile=f"p{i}", config_bundle=ref, initial_input="hi"
                )
                assert created.initial_run is not None
                run = await client.wait_run(created.initial_run.run_id, timeout=BOUND)
                assert run.state is RunState.COMPLETED
                count += 1
        samples = await scrape(server.metrics_port)
        name = "worker_runtime_provider_requests_total"
        models = {dict(labels)["model"] for (n, labels) in samples if n == name}
        assert 2 * PER_BUNDLE > MAX_MODEL_SERIES
        assert len(models) <= MAX_MODEL_SERIES + 1, len(models)
        assert OTHER_MODEL in models
        # every request is still counted, under its own model or under "other"
        assert total(samples, name, provider="echo") == count
        tokens = {dict(ls)["model"] for (n, ls) in samples if n == "worker_runtime_tokens_total"}
        assert len(tokens) <= MAX_MODEL_SERIES + 1
    finally:
        await client.close()
        await server.stop(0)
