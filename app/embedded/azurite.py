"""Azurite (the Azure Blob Storage emulator, from package.json) on a loopback port.

Plain HTTP with the account key by default; with a certificate, HTTPS and OAuth (`--oauth basic`): bearer tokens
are accepted (issuer, audience and lifetime checked, not the signature) and user delegation keys are issued, so
the keyless path (account URL, token credential, user delegation SAS) runs against it. Telemetry is off (Azurite
sends usage data to Microsoft by default)."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from app.embedded.ports import free_port, wait_for_port

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "devstoreaccount1"
# Azurite's documented, public development key: not a secret.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def connection_string(host: str, port: int) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://{host}:{port}/{ACCOUNT};")


@dataclass
class Azurite:
    location: Path
    host: str = "127.0.0.1"
    port: int | None = None
    cert: Path | None = None  # PEM certificate and key: HTTPS with OAuth
    key: Path | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def connection_string(self) -> str:
        return connection_string(self.host, self.port)

    @property
    def account_url(self) -> str:
        return f"{'https' if self.cert else 'http'}://{self.host}:{self.port}/{ACCOUNT}"

    def start(self) -> "Azurite":
        executable = ROOT / "node_modules" / ".bin" / "azurite-blob"
        if not executable.exists():
            raise RuntimeError(f"Azurite is not installed ({executable} missing): run `npm ci` or `make install`")
        self.location.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port(self.host)
        oauth = ["--oauth", "basic", "--cert", str(self.cert), "--key", str(self.key)] if self.cert else []
        self.process = subprocess.Popen(
            [str(executable), "--blobHost", self.host, "--blobPort", str(self.port),
             "--location", str(self.location), "--silent", "--skipApiVersionCheck", "--disableProductStyleUrl",
             "--disableTelemetry", *oauth],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            wait_for_port(self.host, self.port, timeout=30)
        except TimeoutError:
            self.stop()
            raise
        logger.info("Azurite started on %s", self.account_url)
        return self

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after `grace` s: Azurite waits for idle keep-alive clients otherwise."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        logger.info("Azurite stopped")
