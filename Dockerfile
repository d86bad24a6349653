# Production image. One image, three commands (README, "Production"):
#   default                    the API: gunicorn with uvicorn workers
#   python -m app migrate      once per deploy, before the API and workers start (a one-shot job)
#   python -m app worker       the job worker
# Only requirements.txt is installed: no Node, no embedded PostgreSQL.
# Build with the commit so /info/version names it:  docker build --build-arg GIT_COMMIT=$(git rev-parse HEAD) .
# Not built by the tests (no Docker engine where they run); tests/test_production.py checks it against the README.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /srv
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY app ./app
COPY main.py gunicorn.conf.py ./
RUN useradd --system --create-home --uid 10001 labelstore
USER labelstore
# Last, so a new commit does not invalidate the layers above.
ARG GIT_COMMIT=""
ENV GIT_COMMIT=${GIT_COMMIT}
EXPOSE 8080
CMD ["gunicorn", "-c", "gunicorn.conf.py", "main:app", "--worker-class", "uvicorn_worker.UvicornWorker", "--workers", "2", "--bind", "0.0.0.0:8080"]
