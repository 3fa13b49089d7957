"""The ``lavish serve`` web application (FastAPI): one page and a small JSON API over the loaded models.

Routes (docs/serve.md documents them with curl and Python examples):

* ``GET /``: the page (``page.html``: upload or drop a video, see the model's answer next to the player);
* ``GET /api/info``: the models (id, task, file, classes), the limits, the example clips;
* ``POST /api/predict?model=ID&filename=NAME[&question=Q][&top=K]``: the body is the video's bytes; the answer is
  the JSON of ``lavish predict --json`` (one object, not a list) or, for AVQA models, of ``lavish ask --json``;
* ``POST /api/predict?model=ID&example=NAME[...]``: the same on one of the ``--examples`` clips;
* ``GET /examples/NAME``: an example clip (for the page's player); only files listed at start-up are served.

Errors are JSON ``{"error": "<one line>"}``: 400 a request that does not fit the model, 404 an unknown model or
example, 413 a file over ``--max-upload-mb`` or a video over ``--max-duration-s``, 422 a file that cannot be read
(not media, truncated, no video stream), 503 the queue is full (``--max-queue``; a Retry-After header), 500 a bug.

Requests run one at a time in one worker thread (the models share the CPU / GPU); at most ``max_queue`` are
admitted at once (the one running included), the others are refused at once instead of piling up.
"""

from __future__ import annotations

import asyncio
import json
import signal
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from lavish.errors import ConfigError, LavishError
from lavish.serve.config import VIDEO_EXTENSIONS, ServeConfig
from lavish.serve.models import DurationError, Served, check_media, run
from lavish.serve.uploads import TooLarge, UploadArea, remove

def list_examples(folder: str | None) -> dict[str, Path]:
    """name (path relative to the folder, '/'-separated) -> resolved file, for the video files inside ``folder``
    (symbolic links that lead outside it are left out)."""
    if folder is None:
        return {}
    root = Path(folder).resolve()
    found = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file():
            real = path.resolve()
            if real.is_relative_to(root):
                found[path.relative_to(root).as_posix()] = real
    return found


class Busy(Exception):
    """The queue is full."""


class Server:
    """The models, the limits, the upload folder and the one worker thread; :meth:`app` is the ASGI app."""

    def __init__(self, models: list[Served], config: ServeConfig) -> None:
        config.check()
        self.models = {m.id: m for m in models}
        self.config = config
        self.examples = list_examples(config.examples)
        self.uploads = UploadArea(config.upload_dir)
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lavish-serve")
        self.admitted = 0
        self.served = 0

    # ------------------------------------------------------------------------------------------- requests
    def info(self) -> dict:
        return {"models": [m.describe() for m in self.models.values()],
                "limits": {"max_upload_mb": self.config.max_upload_mb, "max_duration_s": self.config.max_duration_s,
                           "max_queue": self.config.max_queue},
                "examples": list(self.examples)}

    def pick(self, model: str | None) -> Served:
        if model is None:
            if len(self.models) == 1:
                return next(iter(self.models.values()))
            raise RequestError(400, f"several models are served: name one with model= ({', '.join(self.models)})")
        if model not in self.models:
            raise RequestError(404, f"no model {model!r} here (models: {', '.join(self.models)})")
        return self.models[model]

    def admit(self) -> None:
        if self.admitted >= self.config.max_queue:
            raise Busy(f"server busy: {self.admitted} requests are queued or running (--max-queue "
                       f"{self.config.max_queue}); try again in a few seconds")
        self.admitted += 1

    def release(self) -> None:
        self.admitted -= 1

    def analyse(self, served: Served, video: Path, shown: str, question: str | None, top_k: int) -> dict:
        """In the worker thread: check the file, run the model, remove what the task wrote."""
        scratch = self.uploads.new_dir()
        try:
            check_media(video, shown, self.config.max_duration_s)
            return run(served, video, shown, question=question, top_k=top_k, scratch=scratch)
        finally:
            remove(scratch)

    # ------------------------------------------------------------------------------------------------ app
    def app(self):
        server = self
        page = resources.files("lavish.serve").joinpath("page.html").read_text(encoding="utf-8")

        @asynccontextmanager
        async def lifespan(app):
            server.uploads.open()
            try:
                yield
            finally:
                server.worker.shutdown(wait=True, cancel_futures=True)
                server.uploads.close()

        app = FastAPI(title="lavish serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

        def as_json(payload: dict, status: int = 200, headers: dict | None = None) -> Response:
            # json.dumps exactly as the CLI's --json does, so the bytes of the numbers are the same
            return Response(json.dumps(payload), status_code=status, media_type="application/json",
                            headers=headers)

        def error(status: int, message: str, headers: dict | None = None) -> Response:
            return as_json({"error": " ".join(message.split())}, status, headers)

        @app.get("/", response_class=HTMLResponse)
        async def index():
            return HTMLResponse(page)

        @app.get("/api/info")
        async def info():
            return as_json(server.info())

        @app.get("/examples/{name:path}")
        async def example(name: str):
            path = server.examples.get(name)
            if path is None:
                return error(404, f"no example {name!r}")
            return FileResponse(path)

        @app.post("/api/predict")
        async def predict(request: Request, model: str | None = None, filename: str | None = None,
                          example: str | None = None, question: str | None = None, top: int = 5):
            try:
                served = server.pick(model)
                if (example is None) == (filename is None):
                    raise RequestError(400, "give either filename= (and the video as the request body) or example=")
                if example is not None and example not in server.examples:
                    raise RequestError(404, f"no example {example!r}")
                if not served.takes_top_k and top != 5:
                    raise RequestError(400, f"top= does not apply to an {served.task.upper()} model")
                if top < 1:
                    raise RequestError(400, f"top={top} is not valid: it must be at least 1")
                server.admit()
            except RequestError as err:
                return error(err.status, str(err))
            except Busy as err:
                return error(503, str(err), {"Retry-After": "5"})
            upload = None
            try:
                if example is not None:
                    video, shown = server.examples[example], Path(example).name
                else:
                    shown = Path(filename.replace("\\", "/")).name or "upload"
                    upload = server.uploads.new_path(Path(shown).suffix)
                    await receive(request, upload, shown, server.config.max_upload_mb)
                    video = upload
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(server.worker, server.analyse, served, video, shown, question,
                                                    top)
                server.served += 1
                return as_json(result)
            except TooLarge as err:
                return error(413, str(err))
            except DurationError as err:
                return error(413, str(err))
            except ConfigError as err:
                return error(400, str(err))
            except LavishError as err:
                return error(422, str(err))
            except Exception as err:  # noqa: BLE001  a bug of ours: one line, and the server goes on
                return error(500, f"internal error: {type(err).__name__}: {err} (a bug in lavish)")
            finally:
                remove(upload)
                server.release()

        return app


class RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def receive(request, path: Path, shown: str, max_mb: float) -> None:
    """Stream the request body into ``path``, refusing (TooLarge) as soon as it passes ``max_mb`` MiB."""
    limit = int(max_mb * 1024 * 1024)
    declared = request.headers.get("content-length")
    too_large = f"{shown}: larger than this server's limit of {max_mb:g} MB (--max-upload-mb)"
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(too_large)
    size = 0
    with open(path, "wb") as f:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLarge(too_large)
            f.write(chunk)
    if size == 0:
        raise LavishError(f"{shown}: empty upload")


def bind(host: str, port: int):
    """A listening TCP socket on host:port (port 0: any free port), or one line saying why not."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({err.strerror or err}); --port picks another port, "
                          "--port 0 any free one") from None
    sock.listen(128)
    return sock


def serve(models: list[Served], config: ServeConfig, sock, ready=None) -> None:
    """Run the server on ``sock`` (:func:`bind`) until SIGINT / SIGTERM (uvicorn); ``ready(url)`` is called once
    it listens."""
    import uvicorn

    server = Server(models, config)
    app = server.app()
    host, port = sock.getsockname()[:2]
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=30))
    if ready is not None:
        original = uv.startup

        async def startup(sockets=None):
            await original(sockets)
            if uv.started:
                ready(f"http://{f'[{host}]' if ':' in host else host}:{port}/")

        uv.startup = startup
    # uvicorn stops gracefully on SIGINT / SIGTERM, then raises the signal again for the handler it found: this
    # one, so that a stopped server exits normally (code 0) once its upload folder is removed
    stops = []
    previous = {sig: signal.signal(sig, lambda number, frame: stops.append(number))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        uv.run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
