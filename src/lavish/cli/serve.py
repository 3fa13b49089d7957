"""``lavish serve --checkpoint FILE [--checkpoint FILE ...]``: a web page and an HTTP API for trained models.

Open the printed address, drop a video on the page and see the model's answer next to the player: AVE a label per
second (a timeline and a table), AVVP the events heard and seen per second, AVS the masks over the frames second
by second, AVQA the answer to your question and the seconds the model looked at. ``POST /api/predict`` answers
with the JSON of ``lavish predict --json`` / ``lavish ask --json`` (docs/serve.md). Listens on 127.0.0.1 unless
``--host`` says otherwise; needs the extra: pip install -e ".[serve]".
"""

from __future__ import annotations

import argparse

from lavish.errors import ConfigError
from lavish.serve.config import ServeConfig

_DEFAULTS = ServeConfig()


def register(sub) -> None:
    p = sub.add_parser("serve", help="a web page and HTTP API for trained models (drop a video, see the answer)",
                       description=__doc__)
    p.add_argument("--checkpoint", action="append", required=True, metavar="FILE",
                   help="adapter file of any task (best.safetensors of a run); repeat for several models")
    p.add_argument("--backbone-weights", help="local timm checkpoint of the backbone, if the runs used one")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s, this machine only; 0.0.0.0 opens it to your "
                        "network)")
    p.add_argument("--port", type=int, default=7860, help="port (default: %(default)s; 0: any free port)")
    p.add_argument("--examples", metavar="DIR", help="folder of example clips offered on the page (only files inside "
                   "it are served)")
    p.add_argument("--max-upload-mb", type=float, default=_DEFAULTS.max_upload_mb,
                   help="largest upload accepted in MB (default: %(default)g)")
    p.add_argument("--max-duration-s", type=float, default=_DEFAULTS.max_duration_s,
                   help="longest video accepted in seconds (default: %(default)g)")
    p.add_argument("--max-queue", type=int, default=_DEFAULTS.max_queue,
                   help="requests admitted at once, the running one included; more are refused with 503 "
                        "(default: %(default)s)")
    p.add_argument("--upload-dir", help="where uploads are kept while they are analysed (default: the system's "
                   "temporary folder); removed after each request")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lavish.serve import require_extra

    require_extra()
    from lavish.serve.app import bind, serve
    from lavish.serve.models import load_models

    config = ServeConfig(max_upload_mb=args.max_upload_mb, max_duration_s=args.max_duration_s,
                         max_queue=args.max_queue, upload_dir=args.upload_dir, examples=args.examples)
    config.check()
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is not valid: 0 to 65535")
    sock = bind(args.host, args.port)  # a port in use is refused before the models are loaded
    try:
        models = load_models(args.checkpoint, backbone_weights=args.backbone_weights)
        for m in models:
            print(f"model {m.id}: {m.task.upper()} {m.path}")

        def ready(url: str) -> None:
            print(f"serving on {url} (Ctrl+C stops)", flush=True)

        serve(models, config, sock, ready=ready)
    finally:
        sock.close()
    print("stopped", flush=True)
    return 0
