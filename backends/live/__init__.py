"""Engine-neutral live serving: what every live backend (vLLM today, SGLang next) uses.

- ``server``: one server process group as a context manager (start, health, stop, logs),
  with its ``lifeline``: the group ends when the tuner ends, ``kill -9`` included;
- ``loadgen``: the streamed OpenAI ``/v1/completions`` load generator, closed loop or on an
  arrival schedule (``arrivals``), with per-request lengths and a shared prefix
  (``prompts``), over the trial's ``ladder`` of load points;
- ``metrics``: a Prometheus ``/metrics`` reader, given the engine's metric names;
- ``nvml``: GPU inventory and per-point energy;
- ``deps``: the optional dependencies, imported when used.

An engine's backend (``backends.vllm``) adds its flags, launch, router and metric names.
Nothing here imports an engine's package.
"""
