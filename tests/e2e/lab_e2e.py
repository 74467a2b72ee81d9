"""Real-browser check of the lessons: JupyterLab + headless Chromium (``make e2e``).

1. copies lesson 2 and lessons/figures/ into a scratch folder (so autosave never writes outputs
   into lessons/),
2. starts JupyterLab there on a free localhost port with a random token,
3. opens the notebook in Debian's Chromium through Playwright (never a downloaded browser),
4. runs all cells, waits for the bit-flipper widget, clicks one bit and checks that the value
   it shows changes (1.0 -> 1.0078125 for the last mantissa bit of BF16) and that set bits are
   coloured by field in the browser (clear grey, exponent green, mantissa blue),
5. checks that the static fallback figure next to the widget loads (a real image, not a
   broken link), saves a screenshot to ``out/e2e/lesson2.png`` and stops the server it started.

Needs: ``apt-get install chromium`` and ``pip install playwright`` (the ``e2e`` extra).
Exit status 0 on success; on failure a screenshot is still saved for diagnosis.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LESSON = next((ROOT / "lessons").glob("02-*.ipynb"))
FIGURES = ROOT / "lessons" / "figures"
OUT = ROOT / "out" / "e2e"
CHROMIUM = os.environ.get("QUANTLAB_CHROMIUM", "/usr/bin/chromium")
TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(folder: Path, port: int, token: str) -> subprocess.Popen:
    cfg = folder / ".jupyter"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(cfg), "JUPYTER_RUNTIME_DIR": str(cfg / "rt"),
           "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    env.pop("MPLBACKEND", None)                    # the lesson draws with the inline backend
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}",
           f"--LabApp.user_settings_dir={cfg / 'settings'}",
           f"--LabApp.workspaces_dir={cfg / 'workspaces'}",
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")                 # containers and CI often run as root
    log = open(folder / "lab.log", "w")
    return subprocess.Popen(cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_ready(port: int, token: str, proc: subprocess.Popen, folder: Path) -> None:
    url = f"http://127.0.0.1:{port}/api/status?token={token}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit("JupyterLab exited:\n" + (folder / "lab.log").read_text()[-3000:])
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("JupyterLab did not answer within 60 s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)        # the server and the kernels it started
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def accept_dialog(page, wait_s: float) -> None:
    """Click the accept button of a JupyterLab dialog (e.g. "Select Kernel") if one shows."""
    button = page.locator(".jp-Dialog .jp-mod-accept")
    try:
        button.first.wait_for(state="visible", timeout=max(wait_s, 0.1) * 1000)
        button.first.click()
    except Exception:                              # no dialog: nothing to accept
        pass


def drive(port: int, token: str, name: str) -> dict:
    from playwright.sync_api import sync_playwright
    OUT.mkdir(parents=True, exist_ok=True)
    shot = OUT / "lesson2.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            page.goto(f"http://127.0.0.1:{port}/lab/tree/{name}?token={token}")
            page.wait_for_selector(".jp-Notebook", timeout=TIMEOUT_S * 1000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                                   timeout=TIMEOUT_S * 1000, state="attached")
            accept_dialog(page, wait_s=10)         # "Select Kernel" on first open
            page.click("li.lm-MenuBar-item:has-text('Run')")
            page.locator(".lm-Menu-item:has-text('Run All Cells')").first.click()
            deadline = time.time() + TIMEOUT_S
            while page.locator(".quantlab-bit-flipper").count() == 0:
                accept_dialog(page, wait_s=0)
                if time.time() > deadline:
                    raise TimeoutError("the bit-flipper widget did not render")
                time.sleep(1)
            flipper = page.wait_for_selector(".quantlab-bit-flipper", timeout=30_000)
            flipper.scroll_into_view_if_needed()
            shown = page.locator(".quantlab-bit-flipper .quantlab-shown")
            page.wait_for_function(
                "() => { const e = document.querySelector('.quantlab-bit-flipper .quantlab-shown');"
                " return e !== null && e.innerText.trim().length > 0; }", timeout=60_000)
            before = shown.inner_text()
            try:                                       # close the "Jupyter news?" toast
                page.locator(".jp-toast-button:has-text('No')").first.click(timeout=2_000)
            except Exception:
                pass
            buttons = page.locator(".quantlab-bit-flipper button.widget-toggle-button")
            n_bits = buttons.count()
            buttons.nth(n_bits - 1).click()              # the last mantissa bit
            page.wait_for_function(
                "b => document.querySelector('.quantlab-bit-flipper .quantlab-shown')"
                ".innerText !== b", arg=before, timeout=30_000)
            after = shown.inner_text()
            # set bits are coloured by field (button_style): the clicked mantissa bit turns
            # "primary" (blue), set exponent bits are "success" (green), clear bits stay grey
            page.wait_for_function(
                "() => { const b = document.querySelectorAll("
                "'.quantlab-bit-flipper button.widget-toggle-button');"
                " return b[b.length - 1].classList.contains('mod-primary'); }", timeout=10_000)
            colours = page.evaluate(
                "() => Array.from(document.querySelectorAll("
                "'.quantlab-bit-flipper button.widget-toggle-button'))"
                ".map(b => getComputedStyle(b).backgroundColor)")
            page.wait_for_function(                        # markdown images finished loading
                "() => Array.from(document.querySelectorAll('.jp-RenderedMarkdown img'))"
                ".every(i => i.complete)", timeout=30_000)
            images = page.evaluate(
                "() => Array.from(document.querySelectorAll('.jp-RenderedMarkdown img'))"
                ".map(i => [i.getAttribute('src'), i.naturalWidth])")
            page.evaluate("document.querySelector('.quantlab-bit-flipper')"
                          ".scrollIntoView({block: 'center'})")
            time.sleep(0.5)
            page.screenshot(path=str(shot))
            return {"bits": n_bits, "before": before, "after": after, "colours": colours,
                    "images": images, "screenshot": str(shot)}
        except Exception:
            page.screenshot(path=str(shot))
            raise
        finally:
            browser.close()


def main() -> int:
    if not Path(CHROMIUM).exists():
        print(f"e2e: {CHROMIUM} not found; install it with: apt-get update && apt-get install -y "
              "chromium (or set QUANTLAB_CHROMIUM)", file=sys.stderr)
        return 2
    t0 = time.time()
    folder = Path(tempfile.mkdtemp(prefix="quantlab-e2e-"))
    shutil.copy(LESSON, folder / LESSON.name)
    shutil.copytree(FIGURES, folder / "figures")          # the markdown's fallback images
    port, token = free_port(), secrets.token_hex(16)
    proc = start_lab(folder, port, token)
    try:
        wait_ready(port, token, proc, folder)
        result = drive(port, token, LESSON.name)
    finally:
        stop(proc)
        shutil.rmtree(folder, ignore_errors=True)
    # 1.0078125 in BF16 = 0 | 01111111 | 0000001: sign and first exponent bit clear (grey),
    # seven exponent bits set (green), the last mantissa bit set (blue)
    c = result["colours"]
    coloured = (len(c) == 16 and c[0] == c[1] == c[9] and len(set(c[2:9])) == 1
                and len({c[0], c[2], c[15]}) == 3)
    images_ok = bool(result["images"]) and all(w > 0 for _, w in result["images"])
    ok = result["bits"] == 16 and result["before"] != result["after"] and coloured and images_ok \
        and result["before"].strip() == "1" and result["after"].strip() == "1.0078125"
    print(f"e2e: {result['bits']} bit buttons; shown value {result['before']!r} -> "
          f"{result['after']!r} after one click; bit colours: clear {c[0]}, set exponent {c[2]}, "
          f"clicked mantissa {c[15]} ({'distinct' if coloured else 'NOT distinct'}); "
          f"fallback images (name, px wide): "
          f"{[(src.split('?')[0].rsplit('/', 1)[-1], w) for src, w in result['images']]}; "
          f"screenshot {result['screenshot']}; {time.time() - t0:.0f} s; "
          f"{'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
