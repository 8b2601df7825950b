"""Build the book: a static HTML site from the executed notebooks, the README and docs/methods/, executing nothing.

    python book/build.py [--profile cpu|smoke|paper] [--executed DIR] [--out DIR]     (./run_all.sh book ...)

The sources are staged into ``OUT/src`` in the repository's own layout (``README.md``, ``docs/methods/*.md``,
``notebooks/*.ipynb`` taken from ``executed/<profile>/``), so every relative link in them keeps pointing where it
pointed in the repository. Sphinx with myst-nb (``nb_execution_mode = "off"``, book/conf.py) then writes
``OUT/html``. What the staged pages link to is staged with them:

* a Markdown file (a table under ``figures/``, ``benchmarks/README.md``) becomes an orphan page of the book;
* an image or any other file is copied at its repository path: Sphinx copies images to ``_images/`` and other
  files to ``_downloads/``;
* a link to a folder goes to the folder's ``README.md`` if it has one, ``figures/NN_name/`` to notebook NN's page,
  any other folder loses its link and keeps its text;
* consecutive stream outputs are merged and their carriage returns applied, as Jupyter shows them (a tqdm bar
  keeps its last state instead of one line per redraw);
* ``<img src=...>`` in a notebook's ``text/html`` output is raw HTML that Sphinx does not follow: its file is copied
  into ``OUT/html`` at its repository path, where the page's relative ``src`` finds it.

A staged file is rewritten only when its content changed, so a rebuild redoes only the pages that did; what an
earlier build staged and this one does not is deleted. Nothing is written outside OUT (default ``_build/book``).
A notebook without an executed copy, or whose executed copy stopped at an error, ends the build with one line
that names it and the command that produces it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOK = Path(__file__).resolve().parent
PROFILES = ("smoke", "cpu", "paper")
#: the Markdown pages of the book besides the notebooks (the README links the rest in)
PAGES = ("README.md", "docs/methods/*.md")
#: [text](target), ![alt](target) and <img src="target">; a target has no spaces (optionally a "title")
_LINK = re.compile(r'(?P<pre>!?\[(?P<text>[^\]\n]*)\]\()(?P<target>[^)\s]+)(?P<title>\s+"[^"\n]*")?\)')
_IMG = re.compile(r'(?P<pre><img\b[^>]*?\bsrc=["\'])(?P<target>[^"\']+)(?P<post>["\'])', re.I)
_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)


class BookError(Exception):
    """A problem the user fixes (a missing or failed executed notebook): printed as one line."""


def executed_notebooks(executed: Path, profile: str) -> list[Path]:
    """The executed copy of every notebook of notebooks/, in order; BookError names any missing or failed one."""
    sources = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    missing = [p for p in sources if not (executed / p.name).is_file()]
    if missing:
        names = ", ".join(p.name for p in missing)
        nums = " ".join(p.name[:2] for p in missing)
        it = "it" if len(missing) == 1 else "them"
        raise BookError(f"no executed copy of {names} in {_show(executed)}/: "
                        f"produce {it} with ./run_all.sh --profile {profile} {nums}")
    failed = [p for p in sources
              if (json.loads((executed / p.name).read_text()).get("metadata", {}).get("papermill") or {})
              .get("exception")]
    if failed:
        names = ", ".join(p.name for p in failed)
        nums = " ".join(p.name[:2] for p in failed)
        raise BookError(f"the executed copy of {names} in {_show(executed)}/ stopped at an error: "
                        f"rerun ./run_all.sh --profile {profile} {nums}")
    return [executed / p.name for p in sources]


def _show(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


class Stager:
    """Copies the book's sources into ``src`` at their repository paths and rewrites the links that need it."""

    def __init__(self, src: Path, profile: str, executed: str):
        self.src, self.profile, self.executed = src, profile, executed
        self.pending: list[Path] = []       # Markdown files linked from a staged page, not yet staged
        self.pages: set[Path] = set()       # repository paths of the staged Markdown pages
        self.raw_assets: set[Path] = set()  # files raw HTML refers to: copied into the HTML output afterwards

    def stage(self, notebooks: list[Path]) -> None:
        self.written: set[Path] = set()
        self.copy(BOOK / "conf.py", "conf.py")
        index = (BOOK / "index.md").read_text()
        self.write("index.md", index.replace("{profile}", self.profile).replace("{executed}", self.executed))
        for nb in notebooks:
            self.stage_notebook(nb)
        for pattern in PAGES:
            for md in sorted(ROOT.glob(pattern)):
                self.stage_markdown(md, orphan=False)
        while self.pending:
            md = self.pending.pop()
            if md not in self.pages:
                self.stage_markdown(md, orphan=True)
        self.remove_stale()

    def write(self, rel: str | Path, text: str) -> None:
        """Write ``src/rel`` unless it already holds ``text``: Sphinx rebuilds exactly the pages that changed."""
        self.put(rel, text.encode())

    def copy(self, path: Path, rel: str | Path) -> None:
        self.put(rel, path.read_bytes())

    def put(self, rel: str | Path, data: bytes) -> None:
        dst = self.src / rel
        self.written.add(dst)
        if dst.is_file() and dst.read_bytes() == data:
            return
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data)

    def remove_stale(self) -> None:
        """Delete what an earlier build staged and this one did not (a page whose link is gone)."""
        for path in sorted(self.src.rglob("*"), reverse=True):
            if path.is_file() and path not in self.written:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()

    def stage_markdown(self, md: Path, orphan: bool) -> None:
        self.pages.add(md)
        text = self.rewrite(md.read_text(), md.parent)
        if orphan:
            if not re.match(r"\s*# ", text):
                text = f"# `{md.relative_to(ROOT)}`\n\n{text}"
            text = "---\norphan: true\n---\n\n" + text
        self.write(md.relative_to(ROOT), text)

    def stage_notebook(self, executed: Path) -> None:
        """The executed copy, at notebooks/<name>: its links are relative to notebooks/ (papermill's cwd)."""
        nb = json.loads(executed.read_text())
        base = ROOT / "notebooks"
        for cell in nb["cells"]:
            if cell["cell_type"] == "markdown":
                cell["source"] = self.rewrite(_text(cell["source"]), base)
            if cell.get("outputs"):
                cell["outputs"] = _as_a_terminal_shows(cell["outputs"])
            for out in cell.get("outputs", []):
                data = out.get("data", {})
                if "text/markdown" in data:
                    data["text/markdown"] = self.rewrite(_text(data["text/markdown"]), base)
                if "text/html" in data:
                    self.note_raw_images(_text(data["text/html"]), base)
        self.write(Path("notebooks") / executed.name, json.dumps(nb, indent=1))

    def rewrite(self, text: str, base: Path) -> str:
        """Stage every local target of the Markdown ``text`` (relative to ``base``), fixing folder links."""
        def link(m: re.Match) -> str:
            new = self.target(m["target"], base)
            if new is None:
                return m["text"]
            return f'{m["pre"]}{new}{m["title"] or ""})'

        def img(m: re.Match) -> str:
            new = self.target(m["target"], base)
            return m[0] if new is None else f'{m["pre"]}{new}{m["post"]}'

        parts, last = [], 0
        for fence in _FENCE.finditer(text):  # leave fenced code alone
            parts.append(_IMG.sub(img, _LINK.sub(link, text[last:fence.start()])))
            parts.append(fence[0])
            last = fence.end()
        parts.append(_IMG.sub(img, _LINK.sub(link, text[last:])))
        return "".join(parts)

    def target(self, target: str, base: Path) -> str | None:
        """The target to write for a link from a page in ``base``; None drops the link (keeps its text)."""
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", target, re.I):
            return target  # a URL, an anchor on the same page, or an absolute path: left to Sphinx
        path_part, _, fragment = target.partition("#")
        path = (base / path_part).resolve()
        if ROOT not in path.parents:
            return target
        if path.is_dir():
            page = self.folder_page(path)
            if page is None:
                return None
            if page.suffix == ".md":
                self.pending.append(page)
            rel = os.path.relpath(page, base)
            return rel + (f"#{fragment}" if fragment else "")
        if path.is_file():
            if path.suffix == ".md":
                self.pending.append(path)
            elif path.suffix != ".ipynb":
                self.copy(path, path.relative_to(ROOT))
        return target

    def folder_page(self, folder: Path) -> Path | None:
        if (folder / "README.md").is_file():
            return folder / "README.md"
        if folder.parent == ROOT / "figures" and (ROOT / "notebooks" / f"{folder.name}.ipynb").is_file():
            return ROOT / "notebooks" / f"{folder.name}.ipynb"
        return None

    def note_raw_images(self, html: str, base: Path) -> None:
        for m in _IMG.finditer(html):
            t = m["target"]
            if re.match(r"^[a-z][a-z0-9+.-]*:|^/", t, re.I):
                continue
            path = (base / t.partition("#")[0]).resolve()
            if ROOT in path.parents and path.is_file():
                self.raw_assets.add(path)


def _as_a_terminal_shows(outputs: list[dict]) -> list[dict]:
    """Merge consecutive stream outputs of one stream and apply their carriage returns, as Jupyter shows them:
    a progress bar redrawn with \\r keeps its last state instead of one line per redraw."""
    merged: list[dict] = []
    for out in outputs:
        if (out.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == out.get("name")):
            merged[-1]["text"] += _text(out["text"])
        else:
            merged.append(dict(out, text=_text(out["text"])) if out.get("output_type") == "stream" else out)
    for out in merged:
        if out.get("output_type") == "stream":
            lines = out["text"].replace("\r\n", "\n").split("\n")
            out["text"] = "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in lines)
    return merged


def _text(source) -> str:
    return "".join(source) if isinstance(source, list) else source


def build(executed: Path, out: Path, profile: str) -> Path:
    """Stage and build; returns the HTML folder."""
    notebooks = executed_notebooks(executed, profile)
    stager = Stager(out / "src", profile, _show(executed))
    stager.stage(notebooks)
    html = out / "html"
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-d", str(out / "doctrees"),
           str(out / "src"), str(html)]
    if subprocess.run(cmd).returncode != 0:
        raise BookError(f"Sphinx failed (command: {' '.join(cmd)})")
    for asset in stager.raw_assets:
        (html / asset.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(asset, html / asset.relative_to(ROOT))
    return html


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="run_all.sh book", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu", choices=PROFILES,
                    help="take the notebooks from executed/<profile>/ (default cpu)")
    ap.add_argument("--executed", type=Path, help="take the executed notebooks from this folder instead")
    ap.add_argument("--out", type=Path, default=ROOT / "_build" / "book",
                    help="build folder: OUT/src (staged sources), OUT/html (the site); default _build/book")
    args = ap.parse_args(argv)
    executed = args.executed or ROOT / "executed" / args.profile
    t0 = time.monotonic()
    try:
        html = build(executed.resolve(), args.out.resolve(), args.profile)
    except BookError as e:
        print(f"run_all.sh book: {e}", file=sys.stderr)
        return 1
    print(f"run_all.sh book: {_show(html / 'index.html')} ({time.monotonic() - t0:.0f} s); "
          f"serve it with: python -m http.server -d {_show(html)} 8000", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
