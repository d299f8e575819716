# One image for every service; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# bubblewrap: the sandbox generated projects' tests run in (prlimit, from util-linux, is already there).
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 devora
COPY setup.cfg pyproject.toml README.md ./
COPY web ./web
COPY worker ./worker
COPY shared ./shared
COPY eventstream ./eventstream
COPY migrations ./migrations
COPY beat_schedule.py cli.py alembic.ini gunicorn.conf.py Procfile ./
RUN pip install . && mkdir -p instance && chown devora instance

USER devora
EXPOSE 8000 8001
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "2", "web:create_app()"]
