"""`retrieve.py serve`: a local search page of an index folder (Flask, an optional requirement).

    GET  /               the page: a text box and an image upload
    GET  /?q=WORDS       a text query          GET /?item=ID   an item of the index as the query
    POST /               an image upload (multipart field "image")
    GET  /image/ROW      a thumbnail of item ROW of the index (nothing else is ever served)

Results are cards: the item's thumbnail (a link that searches by that item), its id, caption and
Hamming distance, ranked as `retrieve.py query` ranks them (:class:`Searcher`). It listens on
127.0.0.1 unless told otherwise; an upload larger than ``max_upload`` bytes, or one that does not
decode as an image, gets its error on the page (status 413 / 400). Images are served by their
row in the index, so no request can name a file. The process only reads the index folder: when
``retrieve.py add`` commits a new generation, the next request reads it.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import sys
from pathlib import Path
from urllib.parse import quote

from cmh.retrieval.index_folder import load_index
from cmh.retrieval.results_page import file_thumbnail, jpeg_thumbnail
from cmh.retrieval.searching import Searcher
from cmh.utils.errors import UserError
from cmh.utils.interrupts import Interrupted, stop_on_signals

STYLE = (
    "body{font-family:sans-serif;margin:16px}form{display:inline-block;margin-right:24px}"
    ".hit{display:inline-block;width:180px;margin:6px;vertical-align:top;border:1px solid #ccc;"
    "padding:4px;font-size:13px}.hit img{width:100%}.error{color:#b00;font-weight:bold}"
    ".query img{width:160px}"
)


class Live:
    """The index folder as the page sees it: reread when its meta.json changes (an `add`)."""

    def __init__(self, root: str, checkpoint: str | None, device: str):
        self.root, self.checkpoint, self.device = Path(root), checkpoint, device
        self.stamp, self.searcher = None, None
        self.refresh()
        self.searcher.hasher  # noqa: B018  (load and check the model before serving)

    def refresh(self) -> Searcher:
        stamp = (self.root / "meta.json").stat().st_mtime_ns
        if stamp != self.stamp:
            searcher = Searcher(load_index(self.root), self.checkpoint, self.device)
            searcher.clip_k = True  # a collection smaller than --k: show it all
            if self.searcher is not None:  # the same model: keep it loaded
                searcher.__dict__["hasher"] = self.searcher.hasher
            self.searcher, self.stamp = searcher, stamp
        return self.searcher


def create_app(index: str, checkpoint: str | None = None, device: str = "auto", k: int = 20,
               max_upload: int = 10 * 2**20):  # fmt: skip
    """The Flask app of the page over the index folder ``index``."""
    try:
        from flask import Flask, Response, abort, request
    except ImportError:
        raise UserError("retrieve.py serve needs Flask: pip install -r requirements-serve.txt") from None
    live = Live(index, checkpoint, device)
    app = Flask("cmh-search", static_folder=None)  # no /static/ route: nothing but the index's images
    app.config["MAX_CONTENT_LENGTH"] = max_upload

    @app.get("/")
    def page():
        searcher, q, item = live.refresh(), request.args.get("q"), request.args.get("item")
        try:
            if item is not None:
                return render(searcher, *searcher.by_item(item, k), q="")
            if q is not None:
                return render(searcher, *searcher.by_text(q, k), q=q)
        except UserError as e:
            return render(searcher, error=str(e), q=q or ""), 400
        return render(searcher)

    @app.post("/")
    def upload():
        searcher, sent = live.refresh(), request.files.get("image")
        if sent is None or not sent.filename:
            return render(searcher, error="choose an image file to upload"), 400
        data = sent.read()
        try:
            image = open_upload(data, sent.filename)
            info, rows = searcher.by_image(image, k, name=f"upload {sent.filename}")
        except UserError as e:
            return render(searcher, error=str(e)), 400
        return render(searcher, info, rows, upload=image)

    @app.errorhandler(413)
    def too_large(_):
        limit = f"{max_upload / 2**20:g} MB"
        return render(live.refresh(), error=f"the upload is larger than {limit} (--max-upload-mb)"), 413

    @app.get("/image/<int:row>")
    def image(row: int):
        items = live.refresh().index.items
        if row >= len(items["images"]) or not items["images"][row]:
            abort(404)
        try:
            return Response(thumbnail(items["images"][row]), mimetype="image/jpeg")
        except Exception:  # a file gone or broken since indexing (PIL raises many types): not found
            abort(404)

    return app


@functools.lru_cache(maxsize=4096)
def thumbnail(path: str) -> bytes:
    return file_thumbnail(path)


MAX_PIXELS = 40_000_000  # an upload's decoded size: 40 megapixels (120 MB of RGB) at most


def open_upload(data: bytes, filename: str):
    """The uploaded bytes as a PIL image; UserError when they are not an image or would decode
    to more than MAX_PIXELS (a small file can hold a huge image)."""
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise UserError(f"upload {filename}: {width} x {height} pixels is more than "
                            f"{MAX_PIXELS // 1_000_000} megapixels")  # fmt: skip
        image.load()
    except UserError:
        raise
    except Exception as e:  # PIL raises OSError, SyntaxError, DecompressionBombError...
        raise UserError(f"upload {filename}: not an image ({type(e).__name__})") from None
    return image


def render(searcher: Searcher, info: dict | None = None, rows: list | None = None, q: str = "",
           error: str = "", upload=None) -> str:  # fmt: skip
    """The whole page: the forms, an error or the query, then the result cards."""
    e, meta = html.escape, searcher.index.meta
    title = f"{e(Path(searcher.index.root).name)}: {meta['n_items']} items, {meta['bits']} bits"
    forms = (
        f'<form method="get" action="/"><input id="q" name="q" size="40" value="{e(q)}" '
        'placeholder="words to search for"> <button id="search">Search</button></form>'
        '<form method="post" action="/" enctype="multipart/form-data">'
        '<input id="image" type="file" name="image" accept="image/*"> '
        '<button id="upload">Search by image</button></form>'
    )
    body = f'<p class="error" id="error">{e(error)}</p>' if error else ""
    if info is not None:
        body += query_html(info, upload) + "".join(card(r) for r in rows)
        body += f"<p id=ties>+{info['more_tied']} more at the last distance</p>" if info.get("more_tied") else ""
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{STYLE}</style></head><body><h2>{title}</h2>{forms}{body}</body></html>")  # fmt: skip


def query_html(info: dict, upload) -> str:
    """The query: its kind, the text, or the uploaded image (a PIL image) as a thumbnail."""
    e = html.escape
    what = f"item {e(str(info['id']))} ({info['modality']})" if "id" in info else info["modality"]
    shown = f"<p>{e(info['caption'])}</p>" if info.get("caption") else ""
    if upload is not None:
        jpeg = base64.b64encode(jpeg_thumbnail(upload)).decode()
        shown = f'<img alt="query" src="data:image/jpeg;base64,{jpeg}">'
    return (f'<div class="query" id="query"><h3>Query: {what} -> {e(info["searched"])} codes</h3>'
            f"{shown}</div>")  # fmt: skip


def card(r: dict) -> str:
    e, link = html.escape, f"/?item={quote(str(r['id']))}"
    image = f'<a href="{e(link)}"><img src="/image/{r["row"]}" alt="{e(str(r["id"]))}"></a>' if r["image"] else ""
    return (f'<div class="hit" data-id="{e(str(r["id"]))}" data-distance="{r["distance"]}">{image}'
            f'<br><a class="id" href="{e(link)}">{e(str(r["id"]))}</a> · distance '
            f'<b class="distance">{r["distance"]}</b><br>{e(r["caption"] or "")}</div>')  # fmt: skip


def serve(index: str, checkpoint: str | None, device: str, host: str, port: int, k: int,
          max_upload: int) -> int:  # fmt: skip
    """Run the page until Ctrl-C or SIGTERM (also when started in the background, where a shell
    leaves SIGINT ignored); it says where it listens. Returns the shell's status: 130 / 143."""
    app = create_app(index, checkpoint, device, k, max_upload)  # first: says when Flask is absent
    from werkzeug.serving import make_server

    # one request at a time, on this thread: with a thread per request, the model running in
    # threads that die made 1 of 8 stops here end in "terminate called without an active
    # exception" (SIGABRT) after "stopped"; single-threaded, 16 of 16 stopped cleanly
    server = make_server(host, port, app, threaded=False)
    print(f"serving {index} at http://{host}:{server.server_port}/ (Ctrl-C stops)", file=sys.stderr)
    try:
        with stop_on_signals():
            server.serve_forever()
    except Interrupted as stop:
        print(f"stopped ({stop.name})", file=sys.stderr)
        return stop.exit_status
    finally:
        server.server_close()
    return 0
