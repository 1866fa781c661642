"""The status line at the top of the dashboard: API address, connection, run and worker counts."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from flowforge.tui.feed import Snapshot
from flowforge.tui.text import visible


class StatusBar(Static):
    """One line, always: updates never need a layout pass."""

    def __init__(self, base_url: str, *, id: str | None = None) -> None:
        super().__init__(f"FlowForge · {base_url} · connecting…", id=id)
        self.base_url = base_url

    def _start(self) -> Text:
        return Text(f"FlowForge · {self.base_url} · ")

    def show_connected(self, snap: Snapshot) -> None:
        """Connected, with the DAG count, the running and queued runs and the worker slots."""
        self.remove_class("-down")
        assert snap.status is not None
        runs = snap.status.runs
        text = self._start()
        text.append("● connected", style="bold green")
        text.append(f" · {len(snap.dags)} DAGs")
        for state in ("running", "queued"):
            if runs.get(state):
                text.append(f" · {runs[state]} {state}")
        text.append(f" · {snap.status.workers.slots} slots")
        self.update(text, layout=False)

    def show_api_error(self, problems: list[str]) -> None:
        """The API answered, but with an error (a wrong token, a failing store)."""
        text = self._start()
        text.append(f"✘ API error: {visible('; '.join(problems))}", style="bold red")
        self.update(text, layout=False)
        self.add_class("-down")

    def show_disconnected(self, reason: str, retry_in: float) -> None:
        """The API did not answer; the next try comes in `retry_in` seconds."""
        text = self._start()
        text.append(f"✘ disconnected — retrying in {retry_in:.0f}s", style="bold red")
        text.append(f" ({visible(reason)})", style="dim")
        self.update(text, layout=False)
        self.add_class("-down")
