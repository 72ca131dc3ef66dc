# syntax=docker/dockerfile:1
# The runbook's image, as deploy/kubernetes/runbook-cronjobs.yaml names it:
#
#   docker build -t ghcr.io/legacyvideo/runbook:0.1.0 .                  # with the HTML report
#   docker build --target runbook-slim -t ghcr.io/legacyvideo/runbook:0.1.0-slim .   # without Node.js
#
# Its entry point is the runbook command: `docker run --rm --env-file production.env
# ghcr.io/legacyvideo/runbook:0.1.0 check --target env`. The package ships its features,
# steps and harness, so it is installed like any wheel (no source tree at run time), without
# the [sandbox] extra: the image checks real targets. Versions: constraints.txt (scripts/lock).

# The Allure 3 CLI, pinned by package-lock.json, for `runbook report`.
FROM node:22-bookworm-slim AS allure
WORKDIR /opt/runbook
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

FROM python:3.11-slim AS runbook-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp
WORKDIR /opt/runbook
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends tini >/dev/null \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 runbook \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp runbook \
 && mkdir -p /data && chown runbook:runbook /data
# The dependencies first, from pyproject.toml and constraints.txt alone: a change to the source
# reuses this layer.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))\
['project']['dependencies'], sep='\n')" > /tmp/requirements.txt \
 && python -m pip install -c constraints.txt -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt
COPY . .
RUN python -m pip install --no-deps . && rm -rf build
# Reports, records and the runbook's state go under /data (a volume in Kubernetes).
WORKDIR /data
USER 10001:10001
# tini as PID 1: signals reach the runbook, and the processes it starts are reaped.
ENTRYPOINT ["tini", "--", "runbook"]
CMD ["--help"]

# The default image: the slim one plus Node.js and the Allure CLI (node from Debian bookworm,
# whose glibc is no newer than the Python image's).
FROM runbook-slim AS runbook
COPY --from=allure /usr/local/bin/node /usr/local/bin/node
COPY --from=allure /opt/runbook/node_modules /opt/runbook/node_modules
ENV PATH=/opt/runbook/node_modules/.bin:$PATH
