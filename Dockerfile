# syntax=docker/dockerfile:1
# The bayou silo image: `bayou silo` as the entrypoint, configured by environment (README
# "Command line" and "Settings"). It serves the sample actors unless told otherwise:
#
#   docker build -t bayou .
#   docker run -p 8080:8080 bayou                                # samples, embedded store
#   docker run -e BAYOU_APP=myapp.actors:app ... my-image        # your app (see below)
#   docker run bayou --app samples.app:app --redis redis://... --cluster prod
#
# Your own actors: build FROM this image and COPY your package into /app (the working
# directory, which `bayou silo` puts on the import path), then set BAYOU_APP.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: install bayou and its dependencies into a virtualenv ----------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/bayou
WORKDIR /src
# pyproject.toml names README.md as the package's readme, so the build needs both.
COPY pyproject.toml README.md ./
COPY bayou ./bayou
# Not editable: the image carries the installed package, not this build directory.
RUN /opt/bayou/bin/pip install . \
 && /opt/bayou/bin/pip uninstall --yes pip setuptools

# -- runtime: the virtualenv, the samples and a non-root user -------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="bayou" \
      org.opencontainers.image.description="Durable virtual actors for Python: a bayou silo" \
      org.opencontainers.image.licenses="Apache-2.0"
# A numeric uid, so Kubernetes' runAsNonRoot can verify it (it cannot check a user name);
# k8s/base/silo.yaml runs as the same ids. /data is where the embedded store lives when
# the silo runs alone (mount a volume there); with Redis the silo writes no files.
RUN groupadd --system --gid 10001 bayou \
 && useradd --system --uid 10001 --gid bayou --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin bayou \
 && mkdir -p /data \
 && chown bayou:bayou /data
COPY --from=build /opt/bayou /opt/bayou
WORKDIR /app
COPY samples ./samples
# Compiled now, as root, so a read-only root filesystem costs no start-up time.
RUN /opt/bayou/bin/python -m compileall -q /app/samples
ENV PATH=/opt/bayou/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BAYOU_APP=samples.app:app \
    BAYOU_HOST=0.0.0.0 \
    BAYOU_PORT=8080 \
    BAYOU_DATA=/data/silo.db
USER 10001:10001
EXPOSE 8080
# Exec form: the silo is PID 1 and gets SIGTERM itself, which starts its graceful drain
# (a shell in between would swallow it). Arguments to `docker run` follow `bayou silo`.
ENTRYPOINT ["bayou", "silo"]
CMD []
