# Production image: migrations, then gunicorn with uvicorn workers. The worker runs the same image with
# `python -m app worker`. Not exercised by the tests (no Docker engine where they run).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOST=0.0.0.0 PORT=8080
WORKDIR /srv
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY app ./app
COPY main.py .
RUN useradd --system --uid 10001 labelstore
USER labelstore
EXPOSE 8080
CMD ["sh", "-c", "python -m app migrate && exec gunicorn main:app -k uvicorn.workers.UvicornWorker -w ${WEB_CONCURRENCY:-2} -b ${HOST}:${PORT} --access-logfile /dev/null"]
