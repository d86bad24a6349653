"""The ASGI app: `uvicorn main:app` (development) or gunicorn with uvicorn workers (production)."""
from app import create_app

app = create_app()
