"""Walk the app as a newcomer would, in headless Chromium, on real models, and keep a screenshot of every step.

For each model: open the page, read the first screen, attribute the default example, compare unsteered and steered
continuations, look at the Steer tab's vector card; on the toy VLM, recipe (d) and the Hallucination tab (New scene,
the check, an absent object's heatmap with the true boxes, the re-check with the recipe's vector). Each step's
screenshot goes to test-output/walk/<model>/NN_<step>.png, and walk.json lists the steps, their seconds, and every
page text that looks like a leak (a traceback, a server path, a Gradio internal).

    python scripts/newcomer_walk.py --models gemma-3-270m,qwen2.5-0.5b-instruct,toy-vlm-shapes

Chromium comes from Debian (/usr/bin/chromium); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LEAK = re.compile(r"Traceback|File \"/|/tmp/gradio|/root/|site-packages|gradio\.exceptions|Error\(")
GEN_DONE = "#grains-gen-status .grains-note-ok, #grains-gen-status .grains-note-warn"


class Walk:
    """One model's walk: numbered screenshots, step timings and leak checks."""

    def __init__(self, page: Any, folder: Path):
        self.page, self.folder, self.steps = page, folder, []
        folder.mkdir(parents=True, exist_ok=True)

    def step(self, name: str, action: Any) -> None:
        """Run `action()`, then screenshot the whole page and scan its text for leaks."""
        start = time.perf_counter()
        error = None
        try:
            action()
        except Exception as exc:  # a step that fails is recorded and the walk goes on
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        shot = self.folder / f"{len(self.steps) + 1:02d}_{name}.png"
        self.page.screenshot(path=str(shot), full_page=True)
        leaks = sorted(set(LEAK.findall(self.page.inner_text("body"))))
        self.steps.append({"step": name, "seconds": round(time.perf_counter() - start, 1), "screenshot": shot.name,
                           "error": error, "leaks": leaks})
        print(f"  {name}: {self.steps[-1]['seconds']} s{' ERROR ' + error if error else ''}"
              f"{' LEAKS ' + str(leaks) if leaks else ''}", flush=True)

    def clicks(self, name: str, selectors: list[str], done: str, timeout_ms: int) -> None:
        """A step that clicks `selectors` in turn, then waits for `done`."""
        def action() -> None:
            for selector in selectors:
                self.page.click(selector)
            self.page.wait_for_selector(done, timeout=timeout_ms)

        self.step(name, action)


def text_steps(walk: Walk, timeout_ms: int) -> None:
    walk.step("first_screen", lambda: walk.page.wait_for_selector("#grains-prompt textarea"))
    walk.clicks("attribute_default_example", ["#grains-attribute"], "#grains-attr-summary .grains-summary", timeout_ms)
    walk.clicks("compare_generate", ["#grains-tab-compare-button", "#grains-generate"], GEN_DONE, timeout_ms)
    walk.step("steer_tab", lambda: walk.page.click("#grains-tab-steer-button"))


def toy_steps(walk: Walk, timeout_ms: int) -> None:
    from components.recipes import RECIPES

    page = walk.page
    walk.step("first_screen", lambda: page.wait_for_selector("#grains-prompt textarea"))

    def recipe() -> None:  # recipe (d): the toy model with its shipped vector
        page.click("#grains-recipe input")
        page.get_by_role("option", name=RECIPES["toy_vlm"].title).click()
        page.wait_for_selector("#grains-recipe-box:has-text('What stronger settings do')", timeout=timeout_ms)

    walk.step("recipe_d_with_its_vector", recipe)
    walk.clicks("hallucination_new_scene", ["#grains-tab-hallucination-button", "#grains-hc-new-scene"],
                "#grains-hc-scene-note:has-text('Generated scene')", timeout_ms)
    walk.clicks("hallucination_check", ["#grains-hc-run"], "#grains-hc-summary table.grains-summary", timeout_ms)

    def heatmap() -> None:
        absent = page.input_value("#grains-hc-absent textarea").split(", ")[0]
        page.locator(f"#grains-hc-probe label:has-text('{absent} (not in photo)')").click()
        page.wait_for_selector("#grains-hc-heat-note .grains-hc-grounding", timeout=timeout_ms)

    walk.step("absent_object_heatmap_with_boxes", heatmap)
    walk.clicks("recheck_with_loaded_vector", ["#grains-hc-source label:has-text('the loaded vector')",
                                               "#grains-hc-recheck"], "#grains-hc-split:has-text('No build')",
                timeout_ms)
    walk.clicks("attribute_example_probe", ["#grains-tab-attribute-button", "#grains-attribute"],
                "#grains-attr-summary .grains-summary", timeout_ms)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gemma-3-270m,qwen2.5-0.5b-instruct,toy-vlm-shapes")
    parser.add_argument("--out", default=str(ROOT / "test-output" / "walk"))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one step may take")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    import app
    from grains.presets import PRESETS

    report: dict[str, Any] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium")
        for model in args.models.split(","):
            print(model, flush=True)
            demo = app.build_app(model, preload=True)
            app.launch_app(demo, server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(args.timeout * 1000)
            dialogs: list[str] = []
            page.on("dialog", lambda d, seen=dialogs: (seen.append(d.message), d.dismiss()))
            page.goto(demo.local_url)
            page.wait_for_selector(f"#grains-model-card:has-text('{model}')")
            walk = Walk(page, Path(args.out) / model)
            is_toy = PRESETS.get(model) is not None and PRESETS[model].vlm
            (toy_steps if is_toy else text_steps)(walk, int(args.timeout * 1000))
            report[model] = {"steps": walk.steps, "dialogs": dialogs}
            context.close()
            demo.close()
        browser.close()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "walk.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    bad = [(m, s["step"]) for m, r in report.items() for s in r["steps"] if s["error"] or s["leaks"]]
    print(f"{sum(len(r['steps']) for r in report.values())} steps, {len(bad)} with an error or a leak: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
