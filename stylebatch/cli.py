"""`stylebatch`: run the whole pipeline on this machine, or serve it like the Function app would.

    stylebatch run clip.mp4 --style mosaic -o out/clip.mosaic.mp4
    stylebatch serve                      # blob trigger by polling + HTTP API on 127.0.0.1:7071
    stylebatch plan clip.mp4 --nodes 4    # what a job would cost on Azure Batch

`run` and `serve` use the real Function app (function_app.py) through the host-less Durable
host, blob storage through azure-storage-blob (an embedded Azurite unless STORAGE is set), and
the local Batch backend (chunk tasks as subprocesses). The Durable host keeps its instances in
that storage, so `serve` resumes interrupted jobs and lists finished ones after any restart.
Every child process dies with this one; temporary files live in one private folder that is
removed on exit (or, after a crash, by the next start).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from shared.callers import LOCAL_IDENTITY
from shared.contract import MODEL_KINDS
from shared.jobs import (
    INCOMING,
    MODELS,
    OUTGOING,
    STYLE_EXTENSIONS,
    STYLES,
    TERMINAL_STATES,
    slugify,
)
from shared.settings import STORAGE_SETTING_NAMES, install_settings, settings_from_env

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "assets"


def _env_overrides(args: argparse.Namespace) -> dict[str, str]:
    pairs = {"FRAMES_PER_CHUNK": args.chunk_frames, "LOCAL_BATCH_SLOTS": args.slots,
             "SCORING_MAX_SIDE": args.max_side, "GATYS_STEPS": args.steps,
             "GATYS_WARM_STEPS": args.warm_steps, "POLL_INTERVAL_S": args.poll,
             "TRAIN_STEPS": getattr(args, "train_steps", None)}
    return {k: str(v) for k, v in pairs.items() if v is not None}


def seed_assets(store: Any) -> None:
    """Upload the bundled style images and trained models unless already there."""
    store.ensure_containers()
    for container, folder, exts in ((STYLES, ASSETS / "styles", STYLE_EXTENSIONS),
                                    (MODELS, ASSETS / "models", ("pt",))):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix.lstrip(".").lower() in exts and not store.exists(container, path.name):
                store.upload_file(container, path.name, path)


class LocalStack:
    """Storage (Azurite unless configured), Durable host, Function host: one process."""

    def __init__(self, stack: ExitStack, *, real_clock: bool = True,
                 azurite_dir: str | None = None, env: dict[str, str] | None = None,
                 app: str | None = None):
        import shutil
        import tempfile

        from shared.procs import private_tempdir
        from shared.storage import get_store
        from stylebatch import worker
        from stylebatch.local_host import binding_environment

        # The app is loaded by the real Python worker's code first: an app the worker would
        # refuse (so Azure and `func start` would run none of it) stops here, before anything
        # starts, with the worker's message (AppLoadError).
        self.app = worker.load_script(app) if app else worker.load_app()
        # Split/stitch scratch, the local pool's task folders and the tasks' own temporary
        # files (TMPDIR) all go into one folder of this process.
        tmp = private_tempdir("stylebatch")
        stack.callback(shutil.rmtree, tmp, True)
        tempfile.tempdir = tmp
        os.environ["TMPDIR"] = tmp  # inherited by the chunk tasks and their ffmpeg
        # The hosted app's settings: this environment with the command's overrides, installed
        # for the app's functions (shared/settings.py) rather than written into os.environ.
        values = {**os.environ, **(env or {})}
        # No sign-in in front of a local host: API calls without a principal run as its user.
        values.setdefault("LOCAL_CALLER", LOCAL_IDENTITY)
        if not any(values.get(name) for name in STORAGE_SETTING_NAMES):
            from stylebatch.azurite import Azurite

            self.azurite = stack.enter_context(Azurite(location=azurite_dir))
            values["STORAGE"] = self.azurite.connection_string
        self.settings = settings_from_env(values)
        install_settings(self.settings)
        stack.callback(install_settings, None)
        os.environ.update(binding_environment(values))  # what the bindings read themselves
        self.store = get_store(self.settings)
        seed_assets(self.store)

        from stylebatch.durable_host import DurableHost, RealClock, VirtualClock
        from stylebatch.durable_store import BlobInstanceStore
        from stylebatch.local_host import LocalFunctionHost

        # The Durable host stops first (on exit callbacks run in reverse): an instance
        # interrupted here stays "running" in storage and resumes at the next start, rather
        # than seeing its tasks killed by the backend's shutdown.
        stack.callback(self._stop_backend)
        self.instance_store = BlobInstanceStore(self.store.service)
        self.durable = DurableHost(self.app, clock=RealClock() if real_clock else VirtualClock(),
                                   store=self.instance_store)
        self.durable.serve_client_api().start_background()
        stack.callback(self.durable.stop)
        self.functions = LocalFunctionHost(self.app, self.durable, self.store)

    def _stop_backend(self) -> None:
        from shared.batch.local import LocalBatchBackend

        LocalBatchBackend.shutdown_all()


def _style_name(store: Any, style: str | None) -> str | None:
    """A style name, or upload an image file given as --style and return its name."""
    if style is None:
        return None
    path = Path(style)
    if path.is_file():
        ext = path.suffix.lstrip(".").lower()
        if ext not in STYLE_EXTENSIONS:
            raise SystemExit(f"error: style image must be one of {STYLE_EXTENSIONS}: {path}")
        name = slugify(path.stem).replace("_", "-")
        store.upload_file(STYLES, f"{name}.{ext}", path)
        return name
    return style


def _bar(status: dict[str, Any], width: int = 28) -> str:
    pct = float(status.get("percent") or 0)
    filled = int(width * pct / 100)
    frames, chunks = status.get("frames", {}), status.get("chunks", {})
    eta = status.get("eta_seconds")
    parts = [f"[{'#' * filled}{'.' * (width - filled)}] {pct:5.1f}% {status['state']:<10}"]
    if frames.get("total"):
        parts.append(f"frames {frames.get('done', 0)}/{frames['total']}")
    if chunks.get("total"):
        parts.append(f"chunks {chunks.get('done', 0)}/{chunks['total']}"
                     f" ({chunks.get('running', 0)} running)")
    if status.get("state") == "scanning" and status.get("scan"):
        parts.append(f"scanned {status['scan'].get('frames_done', 0)} frames")
    if status.get("state") == "training" and status.get("training"):
        parts.append(f"training step {status['training'].get('progress', 0)}")
    if eta is not None:
        parts.append(f"ETA {int(eta) // 60}:{int(eta) % 60:02d}")
    return "  ".join(parts)


def cmd_run(args: argparse.Namespace) -> int:
    from functions.starter import build_request

    video = Path(args.video)
    if not video.is_file():
        print(f"error: no such file: {video}", file=sys.stderr)
        return 2
    started = time.monotonic()
    with ExitStack() as stack:
        env = {"POLL_INTERVAL_S": "1", **_env_overrides(args)}
        local = LocalStack(stack, env=env, app=args.app)
        store, settings = local.store, local.settings
        style = _style_name(store, args.style)
        metadata = {k: v for k, v in (("style", style), ("model", args.model)) if v}
        store.upload_file(INCOMING, video.name, video, metadata=metadata)
        info = store.info(INCOMING, video.name)
        assert info is not None
        req = build_request(video.name, info.etag, info.metadata, settings)
        local.functions.trigger_blob(video.name)
        print(f"job {req.job_id}: {INCOMING}/{video.name} -> {OUTGOING}/{req.output} "
              f"(style {req.style}, model {req.model})", file=sys.stderr)
        status = _follow(local, req.job_id, quiet=args.quiet)
        if status["state"] != "completed":
            print(f"\njob {req.job_id} {status['state']}: {status.get('error')}", file=sys.stderr)
            return 1
        out = Path(args.output or Path("out") / req.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        store.download_file(OUTGOING, req.output, out)
        preview = out.with_name(out.name.rsplit(".", 1)[0] + ".preview.jpg")
        store.download_file(OUTGOING, req.preview, preview)
    took = time.monotonic() - started
    print(f"\ndone in {took:.0f} s\n  video:   {out}\n  preview: {preview}")
    return 0


def _follow(local: LocalStack, job_id: str, quiet: bool = False) -> dict[str, Any]:
    import json

    last = ""
    tty = sys.stderr.isatty()
    deadline = time.monotonic() + 60
    while True:
        resp = local.functions.http("GET", f"/api/jobs/{job_id}")
        if resp.status_code != 200 and time.monotonic() > deadline:
            return {"state": "failed", "error": f"the job never appeared (HTTP "
                                                f"{resp.status_code}: {resp.get_body()!r})"}
        if resp.status_code == 200:
            status = json.loads(resp.get_body())
            line = _bar(status)
            # On a terminal the bar redraws in place; in a log, one line per real change.
            key = line if tty else line.split("  ETA")[0]
            if not quiet and key != last:
                print(("\r" if tty else "") + line + ("" if tty else "\n"), end="",
                      file=sys.stderr, flush=True)
                last = key
            if status["state"] in TERMINAL_STATES:
                return status
        time.sleep(0.5)


def cmd_serve(args: argparse.Namespace) -> int:
    from stylebatch.azurite import DataFolderInUse
    from stylebatch.local_host import BlobPoller

    with ExitStack() as stack:
        data = Path(args.data)
        data.mkdir(parents=True, exist_ok=True)
        try:
            local = LocalStack(stack, azurite_dir=str(data.resolve()), env=_env_overrides(args),
                               app=args.app)
        except DataFolderInUse as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.trace_file:  # one trace per job, as JSON lines (shared/telemetry.py)
            from shared import telemetry

            Path(args.trace_file).parent.mkdir(parents=True, exist_ok=True)
            telemetry.configure_file(args.trace_file)
        local.functions.serve_http(args.port)
        if getattr(local, "azurite", None) is not None:  # the page uploads to it directly
            local.store.allow_browser([f"http://127.0.0.1:{args.port}",
                                       f"http://localhost:{args.port}"])
        poller = BlobPoller(local.functions, interval_s=args.poll_blobs,
                            include_existing=args.process_existing,
                            state=local.instance_store).start()
        stack.callback(poller.stop)
        conn = local.settings.storage_connection_string or local.settings.storage_account_url
        resumed = local.durable.resumed
        print(f"stylebatch serving on http://127.0.0.1:{args.port}/api/jobs\n"
              f"web page: http://127.0.0.1:{args.port}/api/ui\n"
              f"traces: {args.trace_file or '(off)'}\n"
              f"storage: {conn}\n"
              + (f"resuming {len(resumed)} interrupted job(s): {', '.join(sorted(resumed))}\n"
                 if resumed else "")
              + f"upload a video to the '{INCOMING}' container to start a job; Ctrl-C stops.",
              flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping; running jobs resume at the next start", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stylebatch", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def scoring_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--chunk-frames", type=int, help="frames per chunk (default: setting "
                        "FRAMES_PER_CHUNK)")
        sp.add_argument("--slots", type=int, help="chunk tasks run at once (default: "
                        "LOCAL_BATCH_SLOTS)")
        sp.add_argument("--max-side", type=int, help="long side the model works at, 0 = full "
                        "size (default: SCORING_MAX_SIDE)")
        sp.add_argument("--steps", type=int, help="gatys: L-BFGS steps for a chunk's first frame")
        sp.add_argument("--warm-steps", type=int, help="gatys: steps for each following frame")
        sp.add_argument("--train-steps", type=int, help="fast: training steps for a new style")
        sp.add_argument("--app", help="the Function app's script (default: this repository's "
                        "function_app.py), loaded by the real Python worker's code")

    r = sub.add_parser("run", help="run one job end to end on this machine",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    r.add_argument("video", help="the video to restyle")
    r.add_argument("--style", help="a style name in the styles container, or an image file "
                   "(default: setting DEFAULT_STYLE)")
    r.add_argument("--model", choices=MODEL_KINDS, help="default: setting DEFAULT_MODEL")
    r.add_argument("-o", "--output", help="where to write the result "
                   "(default: out/<the result's name in outgoing>)")
    r.add_argument("--poll", type=float, default=None, help="seconds between progress polls "
                   "of the orchestrator (default 1)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    scoring_options(r)
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("serve", help="serve the app locally: HTTP API + blob trigger by polling",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("--port", type=int, default=7071)
    s.add_argument("--data", default=".work/azurite", help="Azurite data folder (when STORAGE "
                   "is not set)")
    s.add_argument("--poll-blobs", type=float, default=2.0, help="seconds between scans of "
                   "incoming/")
    s.add_argument("--process-existing", action="store_true",
                   help="start jobs for every blob in incoming/ that has none (blobs whose "
                   "job exists, running or finished, start nothing). Without it, the first "
                   "start ignores blobs already there; later starts catch up on blobs that "
                   "arrived while serve was down")
    s.add_argument("--poll", type=float, default=None, help="orchestrator poll interval, s")
    s.add_argument("--trace-file", default=".work/traces.jsonl", help="write each job's "
                   "trace spans here as JSON lines ('' for none)")
    scoring_options(s)
    s.set_defaults(func=cmd_serve)

    from stylebatch import plan_cmd

    plan_cmd.add_parser(sub)
    return p


def _stop_signals() -> None:
    """SIGTERM (e.g. `timeout`, a container stop) unwinds like Ctrl-C, so Azurite and the
    local Batch tasks are stopped instead of being left behind. The first signal starts the
    unwinding; more of them are ignored so the clean-up is not cut short by a traceback."""
    import signal

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def main(argv: list[str] | None = None) -> int:
    _stop_signals()
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    handler = getattr(args, "func", None) or args.handler
    from stylebatch.worker import AppLoadError

    try:
        return int(handler(args) or 0)
    except AppLoadError as exc:
        print(f"error: the Python worker refuses the Function app, so Azure and `func start` "
              f"would run none of its functions:\n  {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"\nstylebatch {args.cmd}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())


