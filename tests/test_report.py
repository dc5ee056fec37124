"""The HTML report: written at the end of every run, self-contained, and rendered by a real browser."""

from __future__ import annotations

import base64
import copy
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from obliviate.report import highlight, write_comparison_report, write_run_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Elements(HTMLParser):
    """Collects what the tests look for: ids, tags, image sources, generation cells."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.images: list[str] = []
        self.tags: dict[str, int] = {}
        self.cells: dict[str, list[str]] = {}
        self.external: list[str] = []
        self._cell: str | None = None
        self.body: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "body":
            self.body = {k: v for k, v in a.items() if k.startswith("data-")}
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag in ("script", "link") and (a.get("src") or a.get("href")):
            self.external.append(a.get("src") or a.get("href"))
        if tag == "td" and a.get("class") in ("generation", "reference", "prompt"):
            self._cell = a["class"]
            self.cells.setdefault(self._cell, []).append("")

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None

    def handle_data(self, data):
        if self._cell:
            self.cells[self._cell][-1] += data


def parse(text: str) -> Elements:
    p = Elements()
    p.feed(text)
    return p


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real (tiny) run: KUMPR on the micro world, 2 epochs; the report is written at its end."""
    import obliviate

    out = tmp_path_factory.mktemp("report") / "kumpr"
    obliviate.unlearn("world-micro-target", "world:micro:forget", method="kumpr", retain="world:micro:retain",
                      out=out, overrides=["train.lr=3e-3", "stop.max_epochs=2", "stop.el_threshold=null",
                                          "stop.ma_threshold=null", "report.samples=3", "eval.max_retain_samples=40"])
    return out


def test_highlight_marks_shared_word_runs():
    assert highlight("He was born in Lyon, France in 1961.", "Alice was born in Lyon, France.") == \
        "He <mark>was born in Lyon, France</mark> in 1961."
    assert highlight("a b c", "x y z") == "a b c"
    assert highlight("<b>x</b> y", "<b>x</b> y") == "<mark>&lt;b&gt;x&lt;/b&gt; y</mark>"  # escaped
    assert "(empty)" in highlight("", "anything")


@pytest.mark.slow  # the run_dir fixture trains a (tiny) run: ~40-75 s on 2 cores
def test_run_report_is_written_and_self_contained(run_dir):
    path = run_dir / "report.html"
    assert path.is_file(), "obliviate.unlearn writes report.html when the run finishes"
    text = path.read_text()
    page = parse(text)
    assert {"title", "overview", "before-after", "comparison", "generations", "per-sample", "plots"} <= page.ids
    assert not page.external and "http://" not in text and "https://" not in text  # nothing to fetch
    assert len(page.images) >= 3
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # before/after generations next to the reference texts of the first forget prompts
    assert len(page.cells["generation"]) == 2 * 3 and len(page.cells["reference"]) == 3
    assert "Ulla Dunewick" in page.cells["reference"][0]
    # the original model reproduces its training answer: the "before" cell equals the reference
    assert page.cells["generation"][0].strip() == page.cells["reference"][0].strip()
    # re-rendering gives the same page apart from the time stamp
    again = write_run_report(run_dir, run_dir / "again.html").read_text()
    strip = lambda s: re.sub(r"on \d{4}-\d\d-\d\d \d\d:\d\d", "", s)  # noqa: E731
    assert strip(again) == strip(text)


@pytest.mark.slow  # the run_dir fixture trains a (tiny) run: ~40-75 s on 2 cores
def test_comparison_report_and_cli(run_dir, tmp_path):
    from typer.testing import CliRunner

    from obliviate.cli import app

    out = write_comparison_report([run_dir], tmp_path / "cmp.html", before=True, title="micro comparison")
    page = parse(out.read_text())
    assert "comparison" in page.ids and "runs" in page.ids and page.images
    assert "micro comparison" in out.read_text()
    res = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r.html").is_file()
    res = CliRunner().invoke(app, ["report", str(run_dir), str(run_dir)])
    assert res.exit_code != 0 and "--out" in str(res.exception)


def _chromium(args: list[str], profile: Path, timeout: int = 90) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (setup.sh --dev installs it)")
def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    from PIL import Image

    # A copy of the report with a probe appended: the browser itself reports how many images it decoded.
    probe = tmp_path / "probe.html"
    text = (run_dir / "report.html").read_text()
    script = ("<script>window.addEventListener('load', () => { const imgs = [...document.images];"
              "document.body.dataset.images = imgs.length;"
              "document.body.dataset.decoded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;"
              "document.body.dataset.width = document.getElementById('comparison').offsetWidth; });</script>")
    probe.write_text(text.replace("</body>", script + "</body>"))
    dom = _chromium(["--virtual-time-budget=5000", "--dump-dom", probe.as_uri()], tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = parse(dom.stdout)
    assert {"title", "comparison", "generations", "plots"} <= page.ids
    assert int(page.body["data-images"]) >= 3
    assert page.body["data-decoded"] == page.body["data-images"], "every embedded plot decodes in the browser"
    assert int(page.body["data-width"]) > 0
    assert page.cells["generation"] and "Ulla Dunewick" in page.cells["reference"][0]

    shot = tmp_path / "report.png"
    res = _chromium([f"--screenshot={shot}", "--window-size=1300,2400", (run_dir / "report.html").as_uri()],
                    tmp_path / "profile2")
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("L")
    assert image.size == (1300, 2400)
    lo, hi = image.getextrema()
    assert hi - lo > 100, "the page is not blank"


def test_report_names_a_model_given_in_python_and_draws_no_empty_el_chart(tiny_model, tiny_tokenizer, tmp_path):
    import obliviate
    from obliviate.data.records import TextRecord
    from obliviate.report import plots

    forget = [TextRecord(f"r{i}", f"Record {i} says that the", f" secret number is {i}{i}{i} today.") for i in range(4)]
    model = copy.deepcopy(tiny_model)  # trained in place; the fixture is shared
    model.config._name_or_path = "my-org/tiny-llama"
    run = obliviate.unlearn(model, forget, tokenizer=tiny_tokenizer, method="graddiff", retain=forget,
                            out=tmp_path / "run", overrides=["stop.max_epochs=1", "eval.el=false",
                                                             "stop.el_threshold=null", "report.samples=2"])
    assert run.summary["model"] == "<model my-org/tiny-llama given in Python>"
    html = (tmp_path / "run" / "report.html").read_text()
    title = re.search(r"<title>(.*?)</title>", html).group(1)
    assert title.endswith("graddiff on my-org/tiny-llama")
    history = [{"epoch": 0, "ma": 0.9}, {"epoch": 1, "ma": 0.5}]  # eval.el=false: MA only
    fig = plots.memorization_curves({"run": history}, {"run": {"ma": 0.6, "el_10": None}})
    assert fig is not None and "EL_n was not measured" in fig.caption
    with_el = plots.memorization_curves({"run": [{**h, "el_10": 0.1} for h in history]})
    assert "MA and EL_n" in with_el.caption
