# The wasmlet image: the Kubernetes operator (`wasmlet kube operator`) and the container
# executor, which runs `wasmlet up --listen 0.0.0.0:80 -f <app image> ...` in an ordinary pod.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WASMLET_CACHE_DIR=/tmp/wasmlet-cache

WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && rm -rf /build

# Root by default so the container executor can listen on port 80 like Spin's image does;
# the operator's Deployment runs it as user 65532 (runAsNonRoot).
WORKDIR /
EXPOSE 80
ENTRYPOINT ["wasmlet"]
CMD ["--help"]
