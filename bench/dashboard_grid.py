"""The dashboard's image grid on N images (default 100,000): first paint of 100 tiles against the API call alone.

N rows are COPYed into the images table, the app is served by one uvicorn worker (bench/_harness.py), and
Debian's Chromium (Playwright) loads /dashboard/#/images signed in as admin, REPS times from a fresh load.
Both figures come from the browser's own timing (Performance API): the grid's first paint is the page's
`grid-painted` mark (two animation frames after the 100 tiles are in the DOM, counted from navigation start:
the page, its scripts, /me, the spec, and the images call); the API call alone is the resource timing of its
GET /api/v1/images request. Prints the medians and their ratio; goal: first paint < 1000 ms.
Run: .venv/bin/python bench/dashboard_grid.py [--count 100000]
"""
from __future__ import annotations

import argparse
import shutil
import statistics

from _harness import served_api
from images_cursor import insert_images

REPS = 7
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def measure(page, base_url: str) -> tuple[float, float]:
    page.goto("about:blank")
    page.goto(f"{base_url}/dashboard/#/images")
    page.locator(".grid .tile").first.wait_for(timeout=30_000)
    while not page.evaluate("performance.getEntriesByName('grid-painted').length"):  # (the page's CSP forbids
        page.wait_for_timeout(20)                                                       # wait_for_function's eval)
    return page.evaluate("""() => {
        const painted = performance.getEntriesByName('grid-painted')[0].startTime;
        const call = performance.getEntriesByType('resource').find((r) => new URL(r.name).pathname === '/api/v1/images');
        return [painted, call.responseEnd - call.startTime, document.querySelectorAll('.grid .tile').length];
    }""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="rows in the images table (default 100000)")
    n = parser.parse_args().count

    import httpx
    from playwright.sync_api import sync_playwright

    with served_api() as served:
        created = httpx.post(f"{served.base_url}/api/v1/image_sets", json={"title": "bench"}, headers=served.admin)
        insert_images(served.database_url, created.json()["imageset_id"], n)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                                                        "--disable-background-networking"])
            try:
                page = browser.new_page(viewport={"width": 1366, "height": 900})
                page.goto(f"{served.base_url}/dashboard/")
                page.evaluate("([k, s]) => { sessionStorage.setItem('labelstore.key', k); "
                              "sessionStorage.setItem('labelstore.secret', s); }",
                              [served.admin["Authentication-Key"], served.admin["Authentication-Secret"]])
                measure(page, served.base_url)  # warm up (caches, the first connection)
                samples = [measure(page, served.base_url) for _ in range(REPS)]
            finally:
                browser.close()
    assert all(tiles == 100 for _, _, tiles in samples), samples
    painted = statistics.median(s[0] for s in samples)
    call = statistics.median(s[1] for s in samples)
    print(f"images in catalogue          : {n:,}")
    print(f"GET /api/v1/images (100)     : {call:7.1f} ms  (median of {REPS}, resource timing)")
    print(f"grid first paint (100 tiles) : {painted:7.1f} ms  (from navigation start)")
    print(f"ratio paint / API call       : {painted / call:7.2f}")
    print(f"goal first paint < 1000 ms   : {'met' if painted < 1000 else 'NOT met'}")


if __name__ == "__main__":
    main()
