# technic-stream image: the scoring worker, the replay publisher, `technic train`.
#
#   docker build -t technic-stream .
#
# Used by docker-compose.yml (services topics, train, worker, publisher). Build arg EXTRAS:
# "" (default) serves tree-only bundles (numpy/pandas/lightgbm/xgboost, faust-streaming,
# aiokafka); "[deep]" adds the CPU torch pin needed to serve bundles with LSTM/Transformer
# models (docker build --build-arg EXTRAS=[deep]; the pinned wheel must be reachable).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# libgomp: OpenMP runtime of the LightGBM / XGBoost wheels
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY technic ./technic
COPY stream ./stream
ARG EXTRAS=""
RUN pip install ".${EXTRAS}"

# JSON Schemas of the topic payloads: stream/codecs.py looks next to the package, which is
# site-packages after a non-editable install, so point it at the copy here explicitly.
COPY schemas ./schemas
ENV TECHNIC_SCHEMAS=/app/schemas \
    TECHNIC_REGISTRY=/registry \
    TECHNIC_DATA_DIR=/data

RUN useradd --create-home --uid 1000 technic \
    && mkdir -p /registry /work \
    && chown technic:technic /registry /work
USER technic
WORKDIR /work

CMD ["technic-stream", "--help"]
