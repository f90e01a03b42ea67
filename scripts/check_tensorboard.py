"""TensorBoard in a real browser, over a real sweep: what a user sees, checked and kept as
screenshots (not in git) under the sweep's folder.

    apt-get install -y chromium chromium-driver && pip install selenium
    python scripts/check_tensorboard.py --data-root /tmp/mnist

runs `python train.py -m batch_size=32,64 lr=0.1,1e6 epochs=1` (the two lr=1e6 jobs diverge),
starts `tensorboard --logdir <sweep>`, opens each tab in headless Chromium, saves
<sweep>/tensorboard-check/<tab>.png and checks what can be read from the page: the run names
start with the swept keys; HParams shows the accuracy scores among its first metrics, and its
status filter hides the diverged runs (they are marked failed); the Text tab says why a run
diverged. It
prints each check, and exits 1 if one fails.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ROOT = Path(__file__).resolve().parents[1]
TABS = ("timeseries", "scalars", "custom_scalars", "images", "text", "hparams")  # hparams last
# The text of the page, through shadow roots and same-origin frames (TensorBoard's plugins are
# Polymer elements inside iframes, which `innerText` of the body does not reach).
DEEP_TEXT = """
function deep(node) {
  let text = '';
  if (node.shadowRoot) text += deep(node.shadowRoot);
  if (node.tagName === 'IFRAME') {
    try { text += deep(node.contentDocument.body); } catch (e) {}
  }
  for (const child of node.childNodes) {
    if (child.nodeType === Node.TEXT_NODE) text += child.textContent + ' ';
    else if (child.nodeType === Node.ELEMENT_NODE) text += deep(child);
  }
  return text;
}
return deep(document.body).replace(/\\s+/g, ' ');
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_sweep(data_root: str, sweep_dir: Path) -> None:
    command = [
        sys.executable, str(ROOT / "train.py"), "-m", "batch_size=32,64", "lr=0.1,1e6",
        "epochs=1", f"data.root={data_root}", f"hydra.sweep.dir={sweep_dir}",
    ]  # fmt: skip
    print("+", " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, capture_output=True, text=True)  # exits 0: two jobs ok


def serve(sweep_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(sweep_dir), "--port",
         str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    for _ in range(300):
        try:
            urllib.request.urlopen(url, timeout=1)
            return server, url
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("TensorBoard did not start within 30 s.")


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1600,1000"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def look(driver: webdriver.Chrome, url: str, tab: str, folder: Path, seconds: float = 6) -> str:
    """Open a tab, let it draw, keep a screenshot; the page's text."""
    driver.get("about:blank")  # a fresh page each time: TensorBoard keeps earlier tabs' frames
    driver.get(f"{url}#{tab}")
    time.sleep(seconds)  # TensorBoard loads its data after the page: nothing to wait on
    driver.save_screenshot(str(folder / f"{tab}.png"))
    return driver.execute_script(DEEP_TEXT)


# Click the first element of a tag (a Polymer checkbox or tab, in shadow roots) with a label.
CLICK = """
const [tag, label] = arguments;
function find(node) {
  if (node.tagName === tag && node.textContent.trim().toUpperCase() === label.toUpperCase())
    return node;
  const inside = [...(node.shadowRoot ? [node.shadowRoot] : []), ...(node.children || [])];
  if (node.tagName === 'IFRAME') { try { inside.push(node.contentDocument.body); } catch (e) {} }
  for (const child of inside) { const found = find(child); if (found) return found; }
  return null;
}
const element = find(document.body);
if (element) element.click();
return element !== null;
"""


# The columns HParams shows at first: its ticked boxes, settings' and metrics'.
TICKED = """
const out = [];
function walk(node) {
  if (node.tagName === 'PAPER-CHECKBOX' && node.checked) out.push(node.textContent.trim());
  const inside = [...(node.shadowRoot ? [node.shadowRoot] : []), ...(node.children || [])];
  if (node.tagName === 'IFRAME') { try { inside.push(node.contentDocument.body); } catch (e) {} }
  for (const child of inside) walk(child);
}
walk(document.body);
return out;
"""


# The run names drawn on the page (hidden rows of a filtered table left out).
SHOWN_RUNS = """
const out = [];
function walk(node) {
  for (const child of node.childNodes) {
    if (child.nodeType === Node.TEXT_NODE) {
      const box = child.parentElement;
      if (box && box.getClientRects().length && /^\\s*\\d+_batch_size=/.test(child.textContent))
        out.push(child.textContent.trim());
    } else if (child.nodeType === Node.ELEMENT_NODE) walk(child);
  }
  if (node.shadowRoot) walk(node.shadowRoot);
  if (node.tagName === 'IFRAME') { try { walk(node.contentDocument.body); } catch (e) {} }
}
walk(document.body);
return out;
"""


def trials(driver: webdriver.Chrome) -> set[str]:
    """The job numbers of the runs the HParams table shows."""
    return {name.split("_", 1)[0] for name in driver.execute_script(SHOWN_RUNS)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True, help="where MNIST/raw/ is")
    parser.add_argument("--sweep-dir", type=Path, help="default: outputs/tensorboard-check/<time>")
    args = parser.parse_args()
    sweep_dir = (args.sweep_dir or ROOT / "outputs" / "tensorboard-check" / time.strftime(
        "%Y-%m-%d_%H-%M-%S")).resolve()  # fmt: skip
    run_sweep(args.data_root, sweep_dir)
    folder = sweep_dir / "tensorboard-check"
    folder.mkdir(parents=True, exist_ok=True)
    server, url = serve(sweep_dir)
    driver = browser()
    checks: list[tuple[str, bool]] = []
    try:
        pages = {tab: look(driver, url, tab, folder) for tab in TABS}
        names = [p.name for p in sorted(sweep_dir.glob("[0-9]*_*"))]
        checks.append(
            (f"run names start with the swept keys: {names}",
             all(name.split("_", 1)[1].startswith(("batch_size=", "lr=")) for name in names)
             and all(name in pages["timeseries"] for name in names))
        )  # fmt: skip
        ticked = driver.execute_script(TICKED)
        checks.append(
            (f"HParams shows these metrics at first: {[t for t in ticked if '/' in t]}",
             {"best/test/acc", "best/val/acc"} <= set(ticked))
        )  # fmt: skip
        checks.append(
            (f"HParams shows a status column beside the swept keys: {ticked[:5]}",
             {"status", "batch_size", "lr"} <= set(ticked) and "diverged" in pages["hparams"])
        )  # fmt: skip
        # For the eye only: which runs have a line there.
        if driver.execute_script(CLICK, "PAPER-TAB", "Parallel coordinates view"):
            time.sleep(4)
            driver.save_screenshot(str(folder / "hparams-parallel-coordinates.png"))
        driver.execute_script(CLICK, "PAPER-TAB", "Table view")
        time.sleep(2)
        listed = trials(driver)
        clicked = driver.execute_script(CLICK, "PAPER-CHECKBOX", "Failure")
        for _ in range(40):  # until the table is drawn again
            time.sleep(0.5)
            ok = trials(driver)
            if ok != listed:
                break
        driver.save_screenshot(str(folder / "hparams-without-failures.png"))
        checks.append(
            (f"HParams lists runs {sorted(listed)}; without status Failure, {sorted(ok)}: the "
             "diverged runs are marked failed", clicked and listed == {"0", "1", "2", "3"}
             and ok == {"0", "2"})
        )  # fmt: skip
        checks.append(("the Text tab says why a run diverged", "diverged" in pages["text"]))
    finally:
        driver.quit()
        server.terminate()
    for what, ok in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
    print(f"screenshots: {folder}/")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
