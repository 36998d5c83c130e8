# The Meson operator image: `meson operator` as a non-root user.
#
# Not built on the development machine (it has no container engine); build it where one runs:
#   docker build -t meson:dev .                      # then: kind load docker-image meson:dev
#                                                    #   or: minikube image load meson:dev
# and set image.repository / image.tag in helm/meson/values.yaml (README: "Install on kind or minikube").
# The chart's Deployment runs `meson operator --metrics-port 8080 --liveness-port 8081 --webhook in-cluster ...`
# with a read-only root filesystem (an emptyDir on /tmp) as uid 10001.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY meson ./meson
# Exactly the locked, hashed dependency set (no resolution, no unpinned download); then Meson itself with
# neither dependencies nor an isolated build environment (the image's own setuptools builds it), so nothing
# outside requirements.lock is installed.
RUN pip install --require-hashes --no-deps -r requirements.lock \
    && pip install --no-deps --no-build-isolation . \
    && rm -rf /src

# A fixed numeric uid/gid, so that the pod's runAsNonRoot check can verify it without /etc/passwd lookups.
RUN groupadd --system --gid 10001 meson \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin meson
USER 10001:10001
WORKDIR /tmp

EXPOSE 8080 8081 9443
# For `docker run`; in Kubernetes the chart's liveness and readiness probes use the same endpoint (kopf's
# /healthz on --liveness-port), and HEALTHCHECK is ignored.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/healthz', timeout=4)"]
ENTRYPOINT ["meson"]
CMD ["operator", "--metrics-port", "8080", "--liveness-port", "8081"]
