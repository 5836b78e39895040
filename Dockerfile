# syntax=docker/dockerfile:1.7
# Two images from one file:
#   docker build --target operator -t scalingstudy/operator:0.1.0 .
#   docker build --target trainer  -t scalingstudy/trainer:0.1.0 .
# Base images are pinned by tag; build tools stay in the wheel stage.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG TORCH_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
ARG VERSION=0.1.0
ARG HF_IMAGE=huggingface/transformers-pytorch-gpu:4.41.3

# ---------------------------------------------------------------- wheels (build only)
FROM ${PYTHON_IMAGE} AS wheels
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY trainer/ trainer/
COPY sdk/ sdk/
# The project's wheel and those of its (non-torch) dependencies, scikit-learn included
# (the trainer's built-in digits dataset).
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[datasets]"

# ---------------------------------------------------------------- operator (no torch)
FROM ${PYTHON_IMAGE} AS operator
ARG VERSION
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MPLCONFIGDIR=/tmp/matplotlib
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "scalingstudy==${VERSION}" \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin scalingstudy
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["scalingstudy", "operator"]
CMD ["--all-namespaces"]

# ---------------------------------------------------------------- trainer (CUDA PyTorch)
FROM ${TORCH_IMAGE} AS trainer
ARG VERSION
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MPLCONFIGDIR=/tmp/matplotlib
# torch comes with the base image; the wheel's own dependencies come from the wheel stage.
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "scalingstudy[datasets]==${VERSION}" \
    && useradd --uid 1000 --no-create-home --shell /usr/sbin/nologin trainer
# The uid the operator's trial pods run as (runAsUser 1000).
USER 1000:1000
WORKDIR /tmp
ENTRYPOINT ["scalingstudy-trainer"]

# ---------------------------------------------------------------- your own trainer
# A stock Hugging Face image plus the SDK (standard library only) and the example's
# script: examples/byo-huggingface/study.yaml runs it with trainer.command
# [python, /app/train.py]. Build: docker build --target byo-huggingface .
FROM ${HF_IMAGE} AS byo-huggingface
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1
COPY sdk/ /tmp/sdk/
RUN pip install --no-cache-dir /tmp/sdk \
    && rm -rf /tmp/sdk \
    && (id -u 1000 >/dev/null 2>&1 \
        || useradd --uid 1000 --no-create-home --shell /usr/sbin/nologin trainer)
COPY examples/byo-huggingface/train.py /app/train.py
USER 1000:1000
WORKDIR /tmp
