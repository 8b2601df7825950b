"""Sphinx configuration of the book (book/build.py stages it, with the sources, into _build/book/src).

Sphinx + myst-nb, the engine of Jupyter Book 1, with its theme (sphinx-book-theme). Notebooks are rendered with
the outputs saved in their executed copies: nothing is executed here. Equations are typeset by MathJax 3 served
from the book itself (the copy the sphinx-mathjax-offline package ships), so a book opened from disk without a
network shows them too.
"""
import importlib.util
from pathlib import Path

from sphinx.util.fileutil import copy_asset

project = "geodd"
author = "the geodd authors"
html_title = "geodd"

extensions = ["myst_nb"]
nb_execution_mode = "off"      # the book shows what ./run_all.sh --profile P computed; it never runs a cell
nb_merge_streams = True        # one block per cell for progress lines and prints
myst_enable_extensions = ["dollarmath", "amsmath", "html_image", "colon_fence"]
myst_heading_anchors = 3       # README links such as benchmarks/README.md#allocator resolve to headings

exclude_patterns = ["**.ipynb_checkpoints"]
highlight_language = "text"    # a fence without a language (README's layout tree) is not guessed as Python

html_theme = "sphinx_book_theme"
html_theme_options = {"show_toc_level": 2, "home_page_in_toc": True}
html_show_sourcelink = False

# MathJax from the book's own _static/ (the parts tex-chtml.js loads: TeX extensions, CHTML fonts, menu)
_spec = importlib.util.find_spec("sphinx-mathjax-offline")
_MATHJAX = Path(_spec.origin).parent / "static" / "mathjax" if _spec and _spec.origin else None
_MATHJAX_PARTS = ("tex-chtml.js", "input/tex", "output/chtml", "ui", "a11y")
if _MATHJAX is not None:
    mathjax_path = "mathjax/tex-chtml.js"


def _copy_mathjax(app, exc):
    if exc is None and _MATHJAX is not None:
        for part in _MATHJAX_PARTS:
            dest = Path(app.outdir, "_static", "mathjax", part)
            copy_asset(_MATHJAX / part, dest.parent if dest.suffix == ".js" else dest)


def setup(app):
    app.connect("build-finished", _copy_mathjax)
