# The Meson operator image: `meson operator` as a non-root user.
#
# Not built on the development machine (it has no container engine); build it where one runs:
#   docker build -t <registry>/meson:0.1.0 .
# and set image.repository / image.tag in helm/meson/values.yaml. The chart's Deployment runs
# `meson operator --metrics-port 8080 --liveness-port 8081` with a read-only root filesystem (an emptyDir on
# /tmp) as uid 10001.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# openssl makes the self-signed certificate of webhook.mode=loopback (meson/controllers/admission.py).
RUN apt-get update \
    && apt-get install -y --no-install-recommends openssl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY meson ./meson
# The locked, hashed dependency set; then Meson itself without resolving again.
RUN pip install --require-hashes -r requirements.lock && pip install --no-deps . && rm -rf /src

# A fixed numeric uid/gid, so that the pod's runAsNonRoot check can verify it without /etc/passwd lookups.
RUN groupadd --system --gid 10001 meson \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin meson
USER 10001:10001
WORKDIR /tmp

EXPOSE 8080 8081
ENTRYPOINT ["meson"]
CMD ["operator", "--metrics-port", "8080", "--liveness-port", "8081"]
