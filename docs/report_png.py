"""Redraw docs/report.png, the README's picture of a report, from the README's own command.

    python docs/report_png.py

Runs ``roofsim decode --model llama-2-70b --chip h100-sxm --chips 2 --context 2048 --html``,
opens the page in headless Chromium (/usr/bin/chromium, through playwright), photographs the
top of it (summary, inputs, roofline) and stores it as a small palette PNG.
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim.cli import main  # noqa: E402

COMMAND = ["decode", "--model", "llama-2-70b", "--chip", "h100-sxm", "--chips", "2",
           "--context", "2048"]  # fmt: skip
WIDTH_PX, HEIGHT_PX, SCALED_WIDTH_PX = 1280, 1640, 960


def run() -> int:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        page_path = Path(tmp) / "report.html"
        shot = Path(tmp) / "shot.png"
        with contextlib.redirect_stdout(io.StringIO()):
            code = main([*COMMAND, "--html", str(page_path)])
        if code != 0:
            return code
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": WIDTH_PX, "height": HEIGHT_PX})
            page.goto(page_path.as_uri())
            page.screenshot(path=str(shot))
            browser.close()
        image = Image.open(shot).convert("RGB")
        height = round(image.height * SCALED_WIDTH_PX / image.width)
        image = image.resize((SCALED_WIDTH_PX, height), Image.LANCZOS)
        out = ROOT / "docs" / "report.png"
        image.quantize(colors=128, method=Image.Quantize.FASTOCTREE).save(out, optimize=True)
    print(f"wrote {out.relative_to(ROOT)} ({out.stat().st_size / 1000:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(run())
