"""The book (``./run_all.sh book``): a static HTML site built from executed notebooks without executing them, in
which every notebook has its page and every image every page references resolves.

Design. The book needs executed notebooks, and executing the seven real ones, even at the smoke profile, takes
minutes. tests/test_notebooks.py does execute them, but each into its own ``tmp_path``, and under
``pytest -n 2 --dist loadgroup`` no test can count on another worker having finished first; waiting for its
copies would make this test depend on the order and the split of the run. So this module makes its own executed
copies, independent of every other test, in about 5 seconds (the module takes 15-20 s, the Sphinx build included):

* a tiny notebook is really executed by papermill with the ``python3`` kernel (a print, a progress bar redrawn
  with carriage returns, a matplotlib figure, a Markdown display, a DataFrame), so its outputs have exactly the
  shape papermill and the kernel give them: ``metadata.papermill``, stream / display_data / execute_result,
  base64 ``image/png``, ``text/html``;
* every real notebook of notebooks/ is copied with those real outputs on its code cells and the papermill
  metadata: each page is the real notebook's narrative (its titles, its maths, its Markdown) with outputs of the
  real kinds. It is not a check of the studies' results, which tests/test_notebooks.py runs;
* one copy also gets each kind of reference the builder must resolve: a Markdown image relative to notebooks/
  (``../figures/...png``, the notebooks' working folder under papermill), an ``<img>`` in a Markdown cell, an
  image in a ``text/markdown`` output and an ``<img>`` in a ``text/html`` output (raw HTML Sphinx does not follow).

The build goes through ``run_all.sh book --executed DIR --out DIR``, the user's entry point, into tmp folders,
never into ``_build/``. The checks parse every HTML page: each notebook, the README and each method page has its
page and the index links them; every local ``<img src>``, ``<a href>``, script and stylesheet is a file, and a
``#fragment`` an id on its page; a page with equations loads MathJax from the book; a progress bar shows its last
state only; no page shows Markdown syntax unrendered. The tests that need the build share one (a module fixture
in one xdist group). The missing-copy and failed-copy errors are checked without Sphinx.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
METHOD_PAGES = sorted((ROOT / "docs" / "methods").glob("*.md"))

pytestmark = pytest.mark.xdist_group("book")

_TINY = [
    "print('three runs cached')",
    "import sys\nsys.stderr.write('\\rbar 0%')\nsys.stderr.flush()\nsys.stderr.write('\\rbar 100%\\n')",
    "import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
    "import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(2, 1.5), dpi=40)\nax.plot([0, 1], [1, 0])\n"
    "plt.show()",
    "from IPython.display import Markdown, display\n"
    "display(Markdown('**02_hdd_pruning · methods**\\n\\n| method | acc |\\n|:--|--:|\\n| DM | 69.4 |'))",
    "import pandas as pd\npd.DataFrame({'method': ['DM'], 'acc': [69.4]})",
]


def _env() -> dict:
    """This interpreter's environment, as if activated: run_all.sh's ensure_env then installs nothing."""
    bindir = str(Path(sys.executable).parent)
    return dict(os.environ, VIRTUAL_ENV=sys.prefix, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))


def _run_book(*args: str) -> subprocess.CompletedProcess:
    """``./run_all.sh book ARGS``, as a user runs it."""
    return subprocess.run(["bash", str(ROOT / "run_all.sh"), "book", *args], env=_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def _run_builder(*args: str) -> subprocess.CompletedProcess:
    """``book/build.py ARGS``, what run_all.sh book runs after its environment check (which imports torch: the
    seconds that check costs are spent once, in the build fixture)."""
    return subprocess.run([sys.executable, str(ROOT / "book" / "build.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def _really_executed(tmp: Path) -> dict:
    """A tiny notebook executed by papermill: real outputs of each kind the series produces."""
    import nbformat
    import papermill
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in _TINY]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src, out = tmp / "tiny.ipynb", tmp / "tiny_executed.ipynb"
    nbformat.write(nb, src)
    papermill.execute_notebook(str(src), str(out), kernel_name="python3", cwd=str(tmp), progress_bar=False,
                               log_output=False, execution_timeout=120)
    done = json.loads(out.read_text())
    kinds = {(o["output_type"], k) for c in done["cells"] for o in c["outputs"] for k in o.get("data", {"-": 0})}
    assert {("display_data", "image/png"), ("display_data", "text/markdown"),
            ("execute_result", "text/html")} <= kinds, kinds
    return done


def _reference_cells(figure: Path) -> list[dict]:
    """A Markdown cell and outputs with every kind of image reference, relative to notebooks/."""
    rel = "../" + figure.relative_to(ROOT).as_posix()
    md = {"cell_type": "markdown", "metadata": {}, "id": "book-test-md",
          "source": f"A committed figure: ![accuracy]({rel})\n\n"
                    f"As HTML: <img src=\"{rel}\" alt=\"same\" width=\"50\">\n"}
    outputs = [{"output_type": "display_data", "metadata": {}, "data": {"text/markdown": f"![from output]({rel})",
                                                                        "text/plain": "<Markdown>"}},
               {"output_type": "display_data", "metadata": {}, "data": {"text/html": f"<img src=\"{rel}\">",
                                                                        "text/plain": "<HTML>"}}]
    code = {"cell_type": "code", "metadata": {}, "id": "book-test-code", "execution_count": 99,
            "source": "show()", "outputs": outputs}
    return [md, code]


def _fake_executed(folder: Path, executed: dict) -> Path:
    """Each real notebook with the real outputs on its code cells and papermill's metadata."""
    folder.mkdir()
    outputs = [o for c in executed["cells"] for o in c["outputs"]]
    figure = sorted((ROOT / "figures").glob("*/*.png"))[0]
    for i, path in enumerate(NOTEBOOKS):
        nb = json.loads(path.read_text())
        nb["metadata"]["papermill"] = dict(executed["metadata"]["papermill"], input_path=str(path))
        nb["metadata"]["language_info"] = executed["metadata"]["language_info"]
        for n, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
            cell["outputs"] = copy.deepcopy(outputs)
            cell["execution_count"] = n + 1
        if i == 0:
            nb["cells"][1:1] = _reference_cells(figure)
        (folder / path.name).write_text(json.dumps(nb))
    return folder


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.hrefs, self.assets, self.text, self.ids = [], [], [], [], set()
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "img" and a.get("src"):
            self.imgs.append(a["src"])
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        if (tag == "script" and a.get("src")) or (tag == "link" and a.get("rel") == "stylesheet"):
            self.assets.append(a.get("src") or a.get("href"))
        if tag in ("script", "style", "pre", "code"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style", "pre", "code"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def _refs(page: Path) -> _Refs:
    p = _Refs()
    p.feed(page.read_text())
    return p


def _local(ref: str) -> str | None:
    """The path part of a local reference, or None for a URL, a data: URI or a same-page anchor."""
    parts = urlsplit(ref)
    if parts.scheme or parts.netloc or not parts.path:
        return None
    return unquote(parts.path)


def _pages(book: Path) -> list[Path]:
    """The book's pages (not the theme's Jinja macro files under _static/)."""
    return sorted(p for p in book.rglob("*.html") if "_static" not in p.relative_to(book).parts)


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    import importlib.util
    missing = [m for m in ("sphinx", "myst_nb", "sphinx_book_theme") if importlib.util.find_spec(m) is None]
    assert not missing, f"{missing} missing: pip install -e '.[book]' (run_all.sh would install it, not a test)"
    tmp = tmp_path_factory.mktemp("book")
    executed = _fake_executed(tmp / "executed", _really_executed(tmp))
    r = _run_book("--profile", "smoke", "--executed", str(executed), "--out", str(tmp / "out"))
    assert r.returncode == 0, r.stdout + r.stderr
    return tmp / "out" / "html"


def test_every_notebook_readme_and_method_page_is_built(book):
    expected = [f"notebooks/{p.stem}.html" for p in NOTEBOOKS] + ["README.html", "index.html"] + \
        [f"docs/methods/{p.stem}.html" for p in METHOD_PAGES]
    missing = [e for e in expected if not (book / e).is_file()]
    assert not missing, missing
    nav = {_local(h) for h in _refs(book / "index.html").hrefs}
    assert {f"notebooks/{p.stem}.html" for p in NOTEBOOKS} <= nav, sorted(nav)
    assert "docs/methods/README.html" in nav


def test_notebook_pages_show_their_outputs_without_executing(book):
    for p in NOTEBOOKS:
        page = book / "notebooks" / f"{p.stem}.html"
        html = page.read_text()
        assert "three runs cached" in html and "69.4" in html, p.stem  # stream, Markdown and HTML outputs
        assert "bar 100%" in html and "bar 0%" not in html, p.stem      # a progress bar shows its last state
        assert any(_local(s) and s.endswith(".png") for s in _refs(page).imgs), f"{p.stem}: no figure output"


def test_every_image_every_page_references_resolves(book):
    pages = _pages(book)
    assert len(pages) >= len(NOTEBOOKS) + len(METHOD_PAGES) + 2
    bad, n = [], 0
    for page in pages:
        for src in _refs(page).imgs:
            path = _local(src)
            if path is None:
                continue
            n += 1
            if not (page.parent / path).resolve().is_file():
                bad.append(f"{page.relative_to(book)}: {src}")
    assert n >= 2 * len(NOTEBOOKS) + 2, n
    assert not bad, bad


def test_the_reference_forms_in_a_notebook_all_render(book):
    """The first notebook's Markdown image, its <img>, and the images of its Markdown and HTML outputs."""
    page = book / "notebooks" / f"{NOTEBOOKS[0].stem}.html"
    figure = sorted((ROOT / "figures").glob("*/*.png"))[0]
    hits = [s for s in _refs(page).imgs if Path(_local(s) or "").name.startswith(figure.stem)]
    assert len(hits) >= 4, _refs(page).imgs


def test_every_local_link_resolves_and_no_markdown_is_left_raw(book):
    """Every local href, script and stylesheet is a file and, with a #fragment, an id on that page (README's
    benchmarks/README.md#...); a page with equations loads MathJax from the book itself (it opens offline)."""
    pages = {page.resolve(): _refs(page) for page in _pages(book)}
    bad, raw = [], []
    for page, refs in pages.items():
        if 'class="math' in page.read_text() and not any("mathjax" in (_local(a) or "") for a in refs.assets):
            bad.append(f"{page.relative_to(book.resolve())}: equations without a local MathJax")
        for href in refs.hrefs + refs.assets:
            path, fragment = _local(href), urlsplit(href).fragment
            if path is None and not href.startswith("#"):
                continue
            target = (page.parent / path).resolve() if path else page
            if not target.exists() or (fragment and target in pages and fragment not in pages[target].ids):
                bad.append(f"{page.relative_to(book.resolve())}: {href}")
        text = "".join(refs.text)
        if "![" in text or "](figures/" in text or "```" in text:
            raw.append(str(page.relative_to(book.resolve())))
    assert not bad, bad
    assert not raw, raw


def test_a_missing_executed_copy_is_one_line_naming_it(tmp_path):
    (tmp_path / "executed").mkdir()
    first = NOTEBOOKS[0]
    for p in NOTEBOOKS[1:]:
        (tmp_path / "executed" / p.name).write_text(p.read_text())
    r = _run_builder("--profile", "smoke", "--executed", str(tmp_path / "executed"), "--out", str(tmp_path / "out"))
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and first.name in lines[0], r.stderr
    assert f"./run_all.sh --profile smoke {first.name[:2]}" in lines[0]
    assert not (tmp_path / "out").exists()


def test_a_copy_that_stopped_at_an_error_is_refused(tmp_path):
    (tmp_path / "executed").mkdir()
    for p in NOTEBOOKS:
        nb = json.loads(p.read_text())
        nb["metadata"]["papermill"] = {"exception": p == NOTEBOOKS[-1]}
        (tmp_path / "executed" / p.name).write_text(json.dumps(nb))
    r = _run_builder("--executed", str(tmp_path / "executed"), "--out", str(tmp_path / "out"))
    assert r.returncode != 0 and NOTEBOOKS[-1].name in r.stderr and "stopped at an error" in r.stderr, r.stderr
