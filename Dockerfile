# An optional image for `autolfads cloud init --image` (by default the nodes install this
# package from a wheel and need no image): CUDA PyTorch, autolfads, and the Ray pieces a
# cluster-launcher head needs. Build: `make image` (linux/amd64), or `gcloud builds submit`
# (README). The host's NVIDIA driver (Deep Learning VM family common-cu129-...-nvidia-580 in
# the generated YAML) supports the container's CUDA 12.1.
ARG BASE_IMAGE=pytorch/pytorch:2.5.1-cuda12.1-cudnn9-runtime
FROM ${BASE_IMAGE}

# The head's autoscaler starts and updates worker nodes over SSH + rsync from inside this
# container.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openssh-client rsync \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/autolfads
COPY pyproject.toml README.md ./
COPY src ./src
# torch comes from the base image (pyproject asks for torch>=2.3, already satisfied, so pip keeps
# the CUDA build). ray[default]: dashboard and job server on the head (same version as the
# launcher's); google-api-python-client: the head's autoscaler creates GCP VMs; gcsfs: gs://
# paths through fsspec.
RUN pip install --no-cache-dir . "ray[default,tune]==2.60.0" google-api-python-client gcsfs \
    && autolfads --help > /dev/null

# Logs reach `ray job logs` as they are written; no usage reporting from cluster nodes.
ENV PYTHONUNBUFFERED=1 \
    RAY_USAGE_STATS_ENABLED=0
CMD ["autolfads", "--help"]
