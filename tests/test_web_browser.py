"""The explorer's page in a real browser: Debian's Chromium (`make data` installs it) driven by Playwright with
the system executable — nothing downloads a browser. Skipped, with the reason, when either is missing.

One server (3 scikit-image photos as the collection) and one page: upload by the file picker, by drag-and-drop
and by paste; each panel must render its result (classification top-1 checked against the API and against
ImageNet's cat classes, edge images decoded with edge pixels, the similar grid's images loaded with the query
photo itself first); a click on a result queries with it; a broken upload shows the server's one-line error and
the page keeps working; the browse view pages the collection. Screenshots go to the test's tmp dir.

~40 s here (HED and Lite0 on the CPU, four full queries): the only test that runs the page's JavaScript.
"""

import base64
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright not installed (pip install playwright)"
)

from imagexplore.data.assets import skimage_photos  # noqa: E402
from imagexplore.web.app import Settings  # noqa: E402
from imagexplore.web.background import serve_in_background  # noqa: E402
from imagexplore.web.browser import CHROMIUM, launch_chromium  # noqa: E402

PHOTOS = {p.name: p for p in skimage_photos()}
NAMES = ("coffee.png", "chelsea.png", "rocket.jpg")
IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (make data installs it)"
    ),
    pytest.mark.skipif(not all(n in PHOTOS for n in NAMES), reason="scikit-image photos missing"),
]
LONG = 180_000  # ms: the first query loads Lite0 and HED


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("collection")
    for n in NAMES:
        shutil.copy(PHOTOS[n], folder / n)
    settings = Settings(collection=folder, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)
    with serve_in_background(settings) as url:
        yield url, folder


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as p:
        browser = launch_chromium(p)
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(server[0] + "/")
        pg.wait_for_selector("body[data-ready='1']", timeout=30_000)
        yield pg
        browser.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


def _wait_panels(page, panels=("classify", "edges", "similar"), state="done"):
    for name in panels:
        page.wait_for_selector(f"#panel-{name}[data-state='{state}']", timeout=LONG)


def _top1_index(page) -> int:
    return int(page.get_attribute("[data-testid='top1']", "data-index"))


def test_upload_every_panel_renders(server, page, tmp_path):
    url, folder = server
    assert page.is_visible("#panel-classify") and page.is_visible("#panel-edges")
    assert page.is_visible("#panel-similar")
    assert not page.is_visible("#panel-segment")  # no segmentation checkpoint given: no panel
    assert "Segment: off" in page.inner_text("#off")

    page.set_input_files("#file", str(folder / "chelsea.png"))
    _wait_panels(page)
    page.screenshot(path=str(tmp_path / "upload.png"), full_page=True)

    api = httpx.post(
        f"{url}/api/classify", files={"image": (folder / "chelsea.png").read_bytes()}, timeout=120
    )
    top = api.json()["top"]
    assert _top1_index(page) == top[0]["index"]
    assert page.inner_text("[data-testid='top1'] .label") == top[0]["label"]
    assert top[0]["index"] in IMAGENET_CATS, top[0]
    assert page.locator("[data-testid='top'] li").count() == 5
    assert "server" in page.inner_text("#panel-classify .time")  # the time the request took

    raw = page.locator("[data-testid='edges-raw']")
    assert raw.evaluate("img => img.complete && img.naturalWidth") == 451  # chelsea is 451 × 300
    white = page.locator("[data-testid='edges-thin']").evaluate(
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  let n = 0; for (let i = 0; i < d.length; i += 4) n += d[i] === 255; return n; }"""
    )
    assert 0 < white < 451 * 300 / 4  # thinned edges: some pixels, far from all
    slider = page.locator("#panel-edges input[type=range]")
    slider.fill("250")
    fewer = page.locator("[data-testid='edges-thin']").evaluate(
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  let n = 0; for (let i = 0; i < d.length; i += 4) n += d[i] === 255; return n; }"""
    )
    assert fewer < white  # the threshold slider redraws the thinned map

    thumbs = page.locator("[data-testid='similar-grid'] img")
    assert thumbs.count() >= 1
    for i in range(thumbs.count()):
        thumbs.nth(i).evaluate("img => img.decode()")  # every result image loads
    ids = {i["name"]: i["id"] for i in httpx.get(f"{url}/api/collection").json()["items"]}
    first = page.locator("[data-testid='similar-grid'] figure").first
    assert first.get_attribute("data-id") == ids["chelsea.png"]  # the photo itself ranks first


def test_click_result_queries_with_it(server, page):
    _, folder = server
    page.set_input_files("#file", str(folder / "coffee.png"))
    _wait_panels(page)
    before = _top1_index(page)
    target = page.locator("[data-testid='similar-grid'] figure").first
    ident = target.get_attribute("data-id")
    target.click()
    page.wait_for_function("document.getElementById('query-img').src.includes('/api/image/')")
    _wait_panels(page)
    assert ident in page.get_attribute("#query-img", "src")
    assert _top1_index(page) == before  # coffee.png by id is the same photo as the upload
    assert page.locator("[data-testid='similar-grid'] figure").first.get_attribute("data-id") == ident


_DISPATCH = """async ([kind, b64, name]) => {
    const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], name, {type: 'image/jpeg'}));
    if (kind === 'drop') {
        const el = document.getElementById('drop');
        el.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true}));
        el.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
    } else {
        document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true}));
    }
}"""


@pytest.mark.parametrize("kind", ["drop", "paste"])
def test_drop_and_paste(server, page, kind):
    _, folder = server
    data = base64.b64encode((folder / "rocket.jpg").read_bytes()).decode()
    page.evaluate(_DISPATCH, [kind, data, f"{kind}.jpg"])
    page.wait_for_function(f"document.getElementById('query-name').textContent === '{kind}.jpg'")
    _wait_panels(page)
    assert page.locator("[data-testid='top'] li").count() == 5


def test_broken_upload_shows_the_error_and_page_keeps_working(server, page, tmp_path):
    _, folder = server
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    page.set_input_files("#file", str(bad))
    _wait_panels(page, state="error")
    message = page.inner_text("#panel-classify [data-testid='error']")
    assert message and "\n" not in message.strip()
    page.set_input_files("#file", str(folder / "chelsea.png"))
    _wait_panels(page)
    assert _top1_index(page) in IMAGENET_CATS


def test_browse_view_pages_the_collection(server, page, tmp_path):
    page.click("#nav-browse")
    page.wait_for_selector("[data-testid='browse-grid'] figure")
    assert page.inner_text("[data-testid='page-label']") == "page 1 of 1 · 3 images"
    names = page.locator("[data-testid='browse-grid'] figcaption").all_inner_texts()
    assert sorted(names) == sorted(NAMES)
    page.screenshot(path=str(tmp_path / "browse.png"))
    page.locator("[data-testid='browse-grid'] figure").filter(has_text="rocket.jpg").click()
    assert page.is_visible("#view-explore")
    _wait_panels(page)
    assert page.inner_text("#query-name") == "rocket.jpg"
