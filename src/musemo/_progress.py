"""Progress bars that show on a terminal and stay quiet elsewhere (a pipe, a log file)."""

from __future__ import annotations

import sys


def progress_bar(iterable=None, *, show: bool = True, **options):
    """A ``tqdm`` bar over ``iterable`` (or with ``total=``), shown only when ``show`` and
    standard error is a terminal: piped output gets no carriage-return updates."""
    from tqdm import tqdm

    visible = show and sys.stderr.isatty()
    return tqdm(iterable, disable=not visible, **options)
