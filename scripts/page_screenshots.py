"""Screenshots of the search page (`retrieve.py serve`) for a text query and an uploaded image.

    python scripts/page_screenshots.py --index INDEX_DIR --text "a cat face" --image query.png --out docs/images/page

serves INDEX_DIR on a free port of 127.0.0.1, drives Debian's chromium headless (through
chromium-driver and Selenium), types the text and uploads the image as a person would, and writes
OUT-text.png and OUT-image.png; it prints the top results each page showed (id, distance,
caption). Needs `apt install chromium chromium-driver` and `pip install -r requirements-dev.txt`.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import threading
from pathlib import Path

from cmh.utils.cli import Parser
from cmh.utils.errors import UserError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--index", required=True, help="index folder written by retrieve.py index")
    p.add_argument("--text", required=True, help="the text typed into the page")
    p.add_argument("--image", required=True, help="the image file uploaded")
    p.add_argument("--out", required=True, help="screenshot prefix: OUT-text.png, OUT-image.png")
    p.add_argument("--k", type=int, default=12, help="results per search")
    p.add_argument("--checkpoint", help="checkpoint (default: the index's)")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"), help="device")
    p.add_argument("--width", type=int, default=1280, help="window width in pixels")
    p.add_argument("--height", type=int, default=900, help="window height in pixels")
    return p.parse_args(argv)


def browser(width: int, height: int):
    """Headless chromium through the system's chromedriver (never a download)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        raise UserError("needs Debian's chromium and chromedriver: apt install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def save(driver, path: str) -> None:
    """The window as a PNG of at most 256 colours (a tenth of the size, for docs/)."""
    from PIL import Image

    driver.save_screenshot(path)
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(256)
    small.save(path, optimize=True)


def shown(driver) -> list[str]:
    """One line per result card on the page: id, distance, caption."""
    lines = []
    for hit in driver.find_elements("css selector", ".hit"):
        caption = hit.text.split("\n")[-1] if "\n" in hit.text else ""
        lines.append(f"{hit.get_attribute('data-id')}  {hit.get_attribute('data-distance')}  {caption}")
    return lines


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        if not Path(args.image).is_file():
            raise UserError(f"--image {args.image}: no such file")
        from selenium.common.exceptions import (
            NoSuchElementException,
            StaleElementReferenceException,
        )
        from selenium.webdriver.support.ui import WebDriverWait
        from werkzeug.serving import make_server

        from cmh.retrieval.server import create_app

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # not a line per request
        app = create_app(args.index, args.checkpoint, args.device, args.k)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        driver = browser(args.width, args.height)
        stale = (NoSuchElementException, StaleElementReferenceException)  # the page being replaced
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            driver.get(f"http://127.0.0.1:{server.server_port}/")
            driver.find_element("id", "q").send_keys(args.text)
            driver.find_element("id", "search").click()
            WebDriverWait(driver, 60, ignored_exceptions=stale).until(lambda d: d.find_elements("css selector", ".hit"))
            save(driver, f"{out}-text.png")
            print(f"text {args.text!r} -> {out}-text.png", *shown(driver), sep="\n  ")
            driver.find_element("id", "image").send_keys(str(Path(args.image).resolve()))
            driver.find_element("id", "upload").click()
            WebDriverWait(driver, 60, ignored_exceptions=stale).until(lambda d: "Query: image" in d.find_element("id", "query").text)
            save(driver, f"{out}-image.png")
            print(f"image {args.image} -> {out}-image.png", *shown(driver), sep="\n  ")
        finally:
            driver.quit()
            server.shutdown()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
