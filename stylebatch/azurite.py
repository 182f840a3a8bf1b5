"""Run Azurite (the Azure Storage emulator, installed from npm into node_modules/) on free ports.

    with Azurite() as az:
        print(az.connection_string)

Used by ``stylebatch run``/``serve`` when no storage is configured, and by the tests. Each
instance has its own temporary data folder and is stopped (and the folder removed) on exit.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from shared.settings import AZURITE_ACCOUNT, AZURITE_KEY

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def azurite_blob_exe() -> str:
    local = REPO / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return str(local)
    found = shutil.which("azurite-blob")
    if found:
        return found
    raise RuntimeError("Azurite is not installed: run `make setup` (npm ci installs it into "
                       "node_modules/), or set STORAGE_CONNECTION_STRING to a storage account")


class Azurite:
    """A private Azurite blob service on a free loopback port."""

    def __init__(self, location: str | None = None):
        self._own_location = location is None
        self.location = location or tempfile.mkdtemp(prefix="azurite-")
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
                f"AccountKey={AZURITE_KEY};BlobEndpoint={self.blob_endpoint};")

    def start(self, timeout: float = 30.0) -> Azurite:
        for _attempt in range(3):  # a port picked free can be taken before Azurite binds it
            self.port = free_port()
            log_path = Path(self.location) / "azurite.log"
            self.proc = subprocess.Popen(
                [azurite_blob_exe(), "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                 "--location", self.location, "--skipApiVersionCheck", "--disableTelemetry",
                 "--loose", "--silent"],
                stdout=subprocess.DEVNULL, stderr=open(log_path, "wb"),  # noqa: SIM115
                start_new_session=True)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    # Any HTTP answer means it is up (403 without auth is an answer).
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                    try:
                        conn.request("GET", f"/{AZURITE_ACCOUNT}?comp=list")
                        conn.getresponse().read()
                    finally:
                        conn.close()
                    return self
                except (OSError, http.client.HTTPException):
                    time.sleep(0.1)
            self.stop(remove=False)
        raise RuntimeError(f"Azurite did not start; see {self.location}/azurite.log")

    def stop(self, remove: bool = True) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if remove and self._own_location:
            shutil.rmtree(self.location, ignore_errors=True)

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:  # pragma: no cover - convenience for humans
    with Azurite() as az:
        print(az.connection_string, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
