"""Agg, except that `plt.show()` saves every open figure as `figure_<n>.png` in the current directory.

Use with `MPLBACKEND=module://agentbot_backend` and this directory on `PYTHONPATH`. LLM-written code
ends with `plt.show()` (AutoGen's own examples do); with no screen, this turns each shown figure into a
file the executor returns as an artifact. `<n>` is the lowest number not taken yet in the directory, so
charts of earlier runs are never overwritten. `plt.savefig(...)` works as with Agg. Imports only
matplotlib: agentbot itself is not installed where this runs.
"""

from __future__ import annotations

import os
from typing import Any

from matplotlib._pylab_helpers import Gcf
from matplotlib.backend_bases import FigureManagerBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_MAX_FIGURES = 10_000


class FigureManagerAgentbot(FigureManagerBase):
    """A manager whose `show()` saves its figure instead of opening a window."""

    def show(self) -> None:
        save_figure(self.canvas.figure)


class FigureCanvasAgentbot(FigureCanvasAgg):
    """The Agg canvas, managed by `FigureManagerAgentbot`."""

    manager_class = FigureManagerAgentbot


FigureCanvas = FigureCanvasAgentbot
FigureManager = FigureManagerAgentbot


def show(*args: Any, **kwargs: Any) -> None:
    """Save every open figure as a PNG in the current directory, then close them all."""
    for manager in Gcf.get_all_fig_managers():
        save_figure(manager.canvas.figure)
    Gcf.destroy_all()


def save_figure(figure: Figure) -> str:
    """Save `figure` as the next free `figure_<n>.png` and return that name."""
    for number in range(1, _MAX_FIGURES + 1):
        name = f"figure_{number}.png"
        try:
            # O_EXCL: never overwrite a chart an earlier run (or another process) left behind.
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "wb") as file:
                figure.savefig(file, format="png")
        except BaseException:
            os.unlink(name)  # no empty PNG left behind to be posted
            raise
        return name
    raise FileExistsError(f"figure_1.png to figure_{_MAX_FIGURES}.png all exist")
