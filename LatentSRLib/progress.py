"""Progress on the command line: a tqdm bar driven by a fraction-done callback (used by the CLI and
the demo, so neither imports the other)."""

from __future__ import annotations


def progress_bar(description: str, enabled: bool):
    """(bar, update): a tqdm bar and the ``progress`` callback that moves it; (None, None) when disabled."""
    if not enabled:
        return None, None
    from tqdm import tqdm
    bar = tqdm(total=1000, desc=description, unit="", bar_format="{l_bar}{bar}| {elapsed}<{remaining}")

    def update(fraction: float) -> None:
        bar.update(int(round(fraction * 1000)) - bar.n)
    return bar, update
