"""The ASGI app: `uvicorn main:app` (development) or gunicorn with uvicorn workers (production)."""
import sys

from app.factory import create_app

try:
    app = create_app()
except SystemExit as stop:
    # A configuration error has printed its one line. Gunicorn restarts a worker that exits 2 forever;
    # its "App failed to load" status (4) stops the whole server instead.
    raise SystemExit(4 if stop.code == 2 and "gunicorn" in sys.modules else stop.code) from None
