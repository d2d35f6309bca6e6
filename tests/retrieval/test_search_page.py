"""`retrieve.py serve`: the search page, driven by Debian's chromium (headless, through its
chromedriver) and by Flask's test client for the refusals.

The browser test types a query, uploads an image and clicks a result, and checks each page's
ids and Hamming distances against `retrieve.py query` and that every thumbnail loaded. It needs
`chromium` and `chromium-driver` (Debian packages; `.ci/run` installs them when absent) and the
dev requirements (flask, selenium); without the browser it skips, except under CI, where it fails.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import threading
from pathlib import Path

import pytest
from learning import assert_diverse

import retrieve

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
MAX_UPLOAD = 64 * 1024


@pytest.fixture(scope="module")
def index(learned_run, tmp_path_factory):
    """The learned tiny run's database, indexed (both towers' codes diverse)."""
    assert_diverse(learned_run)
    out = tmp_path_factory.mktemp("page") / "index"
    assert retrieve.main(["index", "--checkpoint", str(learned_run / "best.pt"), "--out", str(out)]) == 0
    return out


def snapshot(folder: Path) -> dict:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


@pytest.fixture(scope="module")
def server(index):
    """The page on a free port of 127.0.0.1, in a thread."""
    pytest.importorskip("flask")
    from werkzeug.serving import make_server

    from cmh.retrieval.server import create_app

    before = snapshot(index)
    srv = make_server("127.0.0.1", 0, create_app(str(index), device="cpu", k=10, max_upload=MAX_UPLOAD),
                      threaded=True)  # fmt: skip
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{srv.server_port}", "port": srv.server_port}
    srv.shutdown()
    assert snapshot(index) == before  # the page never wrote into the index folder


def cli_rows(index: Path, capsys, *argv) -> list[tuple[str, int]]:
    capsys.readouterr()
    assert retrieve.main(["query", "--index", str(index), "--k", "10", *argv]) == 0
    lines = capsys.readouterr().out.splitlines()
    return [(line.split()[1], int(line.split()[2])) for line in lines[2:] if line[:1] == " "]


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and DRIVER):
        if os.environ.get("CI"):
            pytest.fail("CI: chromium and chromedriver must be installed (.ci/run installs them)")
        pytest.skip("chromium / chromedriver absent: apt install chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)  # never a download
    yield driver
    driver.quit()


def page_rows(driver) -> list[tuple[str, int]]:
    hits = driver.find_elements("css selector", ".hit")
    return [(h.get_attribute("data-id"), int(h.get_attribute("data-distance"))) for h in hits]


def thumbnails_loaded(driver) -> list[bool]:
    return driver.execute_script(
        "return [...document.querySelectorAll('.hit img')].map(i => i.complete && i.naturalWidth > 0)"
    )


@pytest.mark.compares
def test_the_page_in_a_browser(server, browser, index, learn_prepared, capsys, tmp_path):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    from cmh.retrieval import load_index

    items = load_index(index).items  # each wait reads the new page, not the one it replaces:
    wait = WebDriverWait(browser, 30, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
    browser.get(server["url"] + "/")
    # a text query, typed
    words = items["captions"][7]
    browser.find_element("id", "q").send_keys(words)
    browser.find_element("id", "search").click()
    wait.until(lambda d: d.find_elements("css selector", ".hit"))
    assert page_rows(browser) == cli_rows(index, capsys, "--text", words)
    assert all(thumbnails_loaded(browser)) and len(thumbnails_loaded(browser)) == 10
    # an image, uploaded
    image = items["images"][3]
    browser.find_element("id", "image").send_keys(image)
    browser.find_element("id", "upload").click()
    wait.until(lambda d: "Query: image" in d.find_element("id", "query").text)
    assert page_rows(browser) == cli_rows(index, capsys, "--image", image)
    # a click on a result searches by that item
    first = browser.find_elements("css selector", ".hit a.id")[0]
    clicked = first.text
    first.click()
    wait.until(lambda d: f"item {clicked}" in d.find_element("id", "query").text)
    assert page_rows(browser) == cli_rows(index, capsys, "--item", clicked)
    assert all(thumbnails_loaded(browser))
    # refusals on the page: not an image, too large
    text_file = tmp_path / "notes.jpg"
    text_file.write_text("not an image")
    browser.find_element("id", "image").send_keys(str(text_file))
    browser.find_element("id", "upload").click()
    wait.until(lambda d: d.find_elements("id", "error"))
    assert "upload notes.jpg: not an image" in browser.find_element("id", "error").text
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff" * (4 * MAX_UPLOAD))
    browser.find_element("id", "image").send_keys(str(big))
    browser.find_element("id", "upload").click()
    wait.until(lambda d: "larger" in d.find_element("id", "error").text)
    assert "the upload is larger than 0.0625 MB" in browser.find_element("id", "error").text
    browser.save_screenshot(str(tmp_path / "refused.png"))


def test_refusals_through_the_test_client(index, tmp_path, monkeypatch):
    pytest.importorskip("flask")
    import io

    from PIL import Image

    from cmh.retrieval.server import create_app

    before = snapshot(index)
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "secret.txt").write_text("not the index's")
    monkeypatch.chdir(tmp_path)  # Flask's default /static/ route would serve this folder
    client = create_app(str(index), device="cpu", k=5, max_upload=MAX_UPLOAD).test_client()
    assert client.get("/static/secret.txt").status_code == 404
    big = client.post("/", data={"image": (io.BytesIO(b"\xff" * (2 * MAX_UPLOAD)), "big.jpg")})
    assert big.status_code == 413 and b"the upload is larger than 0.0625 MB" in big.data
    bad = client.post("/", data={"image": (io.BytesIO(b"GIF89a broken"), "x.gif")})
    assert bad.status_code == 400 and b"upload x.gif: not an image" in bad.data
    none = client.post("/", data={})
    assert none.status_code == 400 and b"choose an image file to upload" in none.data
    empty = client.get("/?q=%20%20")
    assert empty.status_code == 400 and b"the text query is empty" in empty.data
    assert client.get("/?item=nope").status_code == 400
    assert client.get("/image/99999").status_code == 404
    assert client.get("/image/-1").status_code == 404
    ok = client.get("/image/0")
    assert ok.status_code == 200 and ok.mimetype == "image/jpeg" and ok.data[:2] == b"\xff\xd8"
    huge = io.BytesIO()
    Image.new("L", (8000, 6000)).save(huge, format="PNG", optimize=True)  # ~50 KB, 48 megapixels
    wide = create_app(str(index), device="cpu", k=500, max_upload=10 * 2**20).test_client()
    refused = wide.post("/", data={"image": (io.BytesIO(huge.getvalue()), "huge.png")})
    assert refused.status_code == 400 and b"8000 x 6000 pixels is more than 40 megapixels" in refused.data
    everything = wide.get("/?q=sky")  # k 500 > the 216 codes: the page shows them all
    assert everything.status_code == 200 and everything.data.count(b'class="hit"') == 216
    assert snapshot(index) == before


def test_no_path_outside_the_index_is_served(server):
    """Raw requests (a browser would normalise the dots away): only /image/ROW serves files."""
    for path in ("/image/../../etc/passwd", "/image/%2e%2e%2fetc%2fpasswd", "/etc/passwd",
                 "/image/0/../../../etc/passwd", "/static/x"):  # fmt: skip
        conn = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=10)
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        assert response.status == 404 and b"root:" not in body, path


def test_serve_binds_to_this_machine_unless_told(monkeypatch, index, capsys):
    pytest.importorskip("flask")
    import werkzeug.serving

    seen = {}

    class Stop(Exception):
        pass

    def fake_make_server(host, port, app, threaded):
        seen.update(host=host, port=port)
        raise Stop

    monkeypatch.setattr(werkzeug.serving, "make_server", fake_make_server)
    with pytest.raises(Stop):
        retrieve.main(["serve", "--index", str(index), "--device", "cpu"])
    assert seen == {"host": "127.0.0.1", "port": 8000}
    with pytest.raises(Stop):
        retrieve.main(["serve", "--index", str(index), "--device", "cpu", "--host", "0.0.0.0", "--port", "0"])
    assert seen == {"host": "0.0.0.0", "port": 0}


def test_serve_without_flask_says_what_to_install(index, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_flask(name, *args, **kwargs):
        if name == "flask" or name.startswith("flask."):
            raise ImportError("No module named 'flask'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_flask)
    assert retrieve.main(["serve", "--index", str(index), "--device", "cpu"]) == 2
    assert "retrieve.py serve needs Flask: pip install -r requirements-serve.txt" in capsys.readouterr().err


def test_the_screenshot_script_types_uploads_and_saves_both_pages(index, browser, tmp_path, capsys):
    """scripts/page_screenshots.py (the docs' screenshots): two PNGs, the results it saw."""
    import importlib.util

    from PIL import Image

    from cmh.retrieval import load_index

    path = Path(__file__).resolve().parents[2] / "scripts" / "page_screenshots.py"
    spec = importlib.util.spec_from_file_location("page_screenshots", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    items = load_index(index).items
    out = tmp_path / "shots" / "page"
    argv = ["--index", str(index), "--text", items["captions"][2], "--image", items["images"][5],
            "--out", str(out), "--k", "4", "--width", "900", "--height", "700"]  # fmt: skip
    assert script.main(argv) == 0
    printed = capsys.readouterr().out
    for name in ("text", "image"):
        with Image.open(f"{out}-{name}.png") as shot:
            assert shot.size[0] == 900 and shot.mode == "P"  # the height: the window less its bars
    assert printed.count("\n  ") == 8  # four results a page


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_cleanly_on_ctrl_c_and_sigterm(index, signum):
    """A real `retrieve.py serve` process (SIGINT ignored as a shell leaves it for a background
    job): it answers, then stops on the signal with the shell's status, saying so."""
    pytest.importorskip("flask")
    import subprocess
    import sys
    import time

    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, str(repo / "retrieve.py"), "serve", "--index", str(index), "--port", "0",
         "--device", "cpu"],  # fmt: skip
        stderr=subprocess.PIPE, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    try:
        line = proc.stderr.readline()
        assert "serving" in line and "(Ctrl-C stops)" in line, line
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        proc.send_signal(signum)
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.returncode == 128 + signum
        assert f"stopped ({signal.Signals(signum).name})" in proc.stderr.read()
    finally:
        proc.kill()
