# llm-serving-tuner: the image the exported Kubernetes manifests run for `tuner router` (the
# disaggregated prefill/decode router and the agg replicas' balancer).
#   docker build -t REGISTRY/llm-serving-tuner:0.1.0 .
#   docker push REGISTRY/llm-serving-tuner:0.1.0
# then export with `--router-image REGISTRY/llm-serving-tuner:0.1.0`. The router needs only
# the `live` extra (aiohttp, httpx); vLLM itself runs in the vLLM image.
FROM python:3.11-slim
WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY serving ./serving
COPY backends ./backends
COPY search_spaces ./search_spaces
COPY tuner ./tuner
RUN pip install --no-cache-dir '.[live]'
USER 65534:65534
ENTRYPOINT []
CMD ["tuner", "--help"]
