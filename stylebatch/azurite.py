"""Run Azurite (the Azure Storage emulator, installed from npm into node_modules/) on free ports.

    with Azurite() as az:
        print(az.connection_string)

Used by ``stylebatch run``/``serve`` when no storage is configured, and by the tests. Each
instance has its own temporary data folder and is stopped (and the folder removed) on exit,
unless given a folder to keep (``serve --data``).

One Azurite per data folder: the starter holds an exclusive lock on ``<folder>/azurite.lock``
for as long as it runs (the kernel releases it when the process dies, even by ``kill -9``), so
a second ``stylebatch serve`` on the same folder stops with a clear message instead of starting
a second emulator that would show different blobs. Azurite dies with its starter (SIGTERM, so
it saves its database on the way out); one left behind anyway (a system without that feature)
is named in ``<folder>/azurite.pid`` and stopped by the next start.
"""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_any,
    wait_exponential,
)

from shared.procs import die_with_parent, pid_alive, process_cmdline
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


class DataFolderInUse(RuntimeError):
    """Another process runs an Azurite on this data folder."""


class NotAnswering(RuntimeError):
    """Nothing answered HTTP on the port in time (or the process behind it ended)."""


def wait_until_answers(port: int, timeout: float, alive: Callable[[], bool] = lambda: True,
                       path: str = f"/{AZURITE_ACCOUNT}?comp=list") -> int:
    """Wait until an HTTP server on 127.0.0.1:``port`` answers, retrying with a growing pause
    (0.05 s doubling to 1 s) for at most ``timeout`` seconds, or until ``alive()`` turns false.
    Any HTTP answer counts (Azurite answers 403 without auth). Returns the number of tries;
    raises NotAnswering with the port, the tries and the last error."""
    def ask() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            conn.request("GET", path)
            conn.getresponse().read()
        finally:
            conn.close()

    retrying = Retrying(
        stop=stop_any(stop_after_delay(timeout), lambda _state: not alive()),
        wait=wait_exponential(multiplier=0.05, max=1.0),
        retry=retry_if_exception_type((OSError, http.client.HTTPException)))
    try:
        retrying(ask)
    except RetryError as exc:
        last = exc.last_attempt
        why = "its process ended" if not alive() else f"not within {timeout:g} s"
        raise NotAnswering(f"nothing answered on 127.0.0.1:{port} ({why}; "
                           f"{last.attempt_number} tries, last: {last.exception()!r})") from None
    return int(retrying.statistics.get("attempt_number", 1))


class Azurite:
    """A private Azurite blob service on a free loopback port."""

    def __init__(self, location: str | None = None):
        self._own_location = location is None
        self.location = location or tempfile.mkdtemp(prefix="azurite-")
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._lock_fh = None

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
                f"AccountKey={AZURITE_KEY};BlobEndpoint={self.blob_endpoint};")

    def _take_folder(self) -> None:
        """Lock the data folder for this process; stop an Azurite an earlier run left on it."""
        folder = Path(self.location)
        folder.mkdir(parents=True, exist_ok=True)
        fh = open(folder / "azurite.lock", "a+")  # noqa: SIM115 - held until stop()
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            fh.close()
            raise DataFolderInUse(f"the Azurite data folder {folder} is in use by process "
                                  f"{holder} (another stylebatch serve?); stop it or use "
                                  "another --data folder") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._lock_fh = fh
        stale = _read_pid_file(folder / "azurite.pid")
        if stale and pid_alive(stale) and any("azurite" in a for a in process_cmdline(stale)) \
                and str(folder) in process_cmdline(stale):
            _stop_pid(stale)

    def start(self, timeout: float = 30.0) -> Azurite:
        self._take_folder()
        for _attempt in range(3):  # a port picked free can be taken before Azurite binds it
            self.port = free_port()
            log_path = Path(self.location) / "azurite.log"
            self.proc = subprocess.Popen(
                [azurite_blob_exe(), "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                 "--location", self.location, "--skipApiVersionCheck", "--disableTelemetry",
                 "--loose", "--silent"],
                stdout=subprocess.DEVNULL, stderr=open(log_path, "wb"),  # noqa: SIM115
                start_new_session=True, preexec_fn=die_with_parent(signal.SIGTERM))
            (Path(self.location) / "azurite.pid").write_text(
                json.dumps({"pid": self.proc.pid, "port": self.port}))
            try:
                wait_until_answers(self.port, timeout,
                                   alive=lambda p=self.proc: p.poll() is None)
                return self
            except NotAnswering:
                self._stop_proc()
        self.stop(remove=False)
        raise RuntimeError(f"Azurite did not start; see {self.location}/azurite.log")

    def stop(self, remove: bool = True) -> None:
        self._stop_proc()
        if self._lock_fh is not None:
            (Path(self.location) / "azurite.pid").unlink(missing_ok=True)
            self._lock_fh.close()  # releases the folder lock
            self._lock_fh = None
        if remove and self._own_location:
            shutil.rmtree(self.location, ignore_errors=True)

    def _stop_proc(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_pid_file(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _stop_pid(pid: int, wait_s: float = 10.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


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
