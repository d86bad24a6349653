"""Gunicorn settings for the API (`gunicorn -c gunicorn.conf.py main:app ...`): metrics summed over all worker
processes, and gunicorn's own lines in the app's log format.

Bind address, worker count and worker class stay on the command line (see README).
"""
import glob
import os
import shutil
import tempfile

# prometheus_client picks its multiprocess mode when first imported, so this must be set before any worker
# (or a --preload master) loads the app. Each worker then writes its series to files there, and /metrics,
# whichever worker answers it, sums them all. Unset, each gunicorn gets a fresh directory of its own.
_made_here = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _made_here:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="label-store-metrics-")
metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
os.makedirs(metrics_dir, exist_ok=True)

# Gunicorn's management socket (gunicornc) is not used; one path per user would be shared by every server.
control_socket_disable = True


def on_starting(server):
    """The settings are checked once, before any worker is forked: a bad configuration stops gunicorn with the
    app's one line and gunicorn's "app failed to load" status (4). Left to the workers, every one of them fails
    at once, and gunicorn 27, halting on the first, raises again on the second and prints a traceback.
    Counters left by an earlier run would be summed with the new ones: start from an empty directory."""
    from app.settings import load_or_exit

    try:
        load_or_exit(need_servers=True)
    except SystemExit:
        on_exit(server)
        raise SystemExit(4) from None
    for path in glob.glob(os.path.join(metrics_dir, "*.db")):
        os.remove(path)


def on_exit(server):
    if _made_here:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def post_worker_init(worker):
    """Uvicorn workers serve with the protocol that caps request headers while they arrive (app/limits.py)."""
    if hasattr(worker, "config"):  # a uvicorn worker whose server has not started yet
        worker.config.http = "app.limits:HeadLimitedHttpTools"


def child_exit(server, worker):
    """A dead worker's counters stay in the sum (they are totals); its live gauges must go."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, metrics_dir)


def _logger_class():
    from gunicorn.glogging import Logger

    class AppFormatLogger(Logger):
        """Gunicorn's own lines ("Booting worker", "Worker timeout") go through the app's log handler."""

        def setup(self, cfg):
            super().setup(cfg)
            from app import logs
            from app.settings import SettingsError, load

            try:
                settings = load()
                logs.configure(settings.log_level, settings.log_format)
            except SettingsError:
                logs.configure()  # the app itself will stop with the one-line configuration error
            for log in (self.error_log, self.access_log):
                log.handlers = []
                log.propagate = True

    return AppFormatLogger


logger_class = _logger_class()
