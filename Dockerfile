# One image for the worker, Flower and (locally) the simulator.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
# Dependencies pinned by the lock file (make lock), then the project without resolving again.
RUN pip install --no-deps -r requirements.lock
COPY worker ./worker
COPY tasks ./tasks
COPY cli ./cli
COPY simulator ./simulator
COPY voicemail_worker ./voicemail_worker
# The worker's own dependencies (the `worker` extra) are in the lock file; this installs
# the project as `.[worker]` without resolving again.
RUN pip install --no-deps '.[worker]' && useradd --system --uid 10001 voicemail
USER voicemail
CMD ["celery", "-A", "worker", "worker", "--pool", "threads", "--concurrency", "32", "--loglevel", "INFO"]
