"""Modal screens: the confirmation asked before a destructive action, and the key help."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Static

from flowforge.tui.states import RUN_GLYPHS, TASK_GLYPHS


class ConfirmScreen(ModalScreen[dict[str, bool] | None]):
    """Asks yes or no; dismisses with the options chosen (e.g. {"downstream": True}), or None for no."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(
        self, title: str, question: str, confirm_label: str, options: dict[str, str] | None = None
    ) -> None:
        super().__init__()
        self._title = title
        self._question = question
        self._confirm_label = confirm_label
        self._options = options or {}

    def compose(self) -> ComposeResult:
        """A dialog box: the question, the options as checkboxes, yes and no buttons."""
        with Vertical(id="dialog") as box:
            box.border_title = self._title
            yield Static(Text(self._question), id="question")  # never read as markup
            for key, label in self._options.items():
                yield Checkbox(label, value=True, id=f"opt-{key}")
            with Horizontal(id="buttons"):
                yield Button(f"{self._confirm_label} (y)", variant="error", id="yes")
                yield Button("Keep (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        """Focus "keep": enter alone must never do the destructive thing."""
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Answer with the button."""
        self.action_answer(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        """Close the dialog with the answer."""
        if not yes:
            self.dismiss(None)
            return
        self.dismiss({key: self.query_one(f"#opt-{key}", Checkbox).value for key in self._options})


HELP = """\
[b]Keys[/b]
  [b]t[/b]  trigger a run           [b]p[/b]  pause / unpause the DAG
  [b]c[/b]  cancel the run (asks)   [b]r[/b]  retry the task (asks)
  [b]l[/b]  log pane                [b]/[/b]  filter DAGs (esc clears)
  [b]?[/b]  this help               [b]q[/b]  quit
  [b]arrows[/b] move, [b]enter[/b] opens a task's log, [b]tab[/b] next pane
  [b]shift+arrows[/b] pan the graph, [b]\\[ ][/b] older / newer attempt"""


def _legend(glyphs: dict[str, str]) -> str:
    items = [f"{g} {s}" for s, g in glyphs.items()]
    return "\n".join("  " + "   ".join(items[i : i + 4]) for i in range(0, len(items), 4))


class HelpScreen(ModalScreen[None]):
    """The keys and what each state's glyph means."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        """Keys, then the task and run legends."""
        with Vertical(id="help") as box:
            box.border_title = "FlowForge dashboard"
            yield Static(HELP)
            yield Static(f"[b]Task states[/b]\n{_legend(TASK_GLYPHS)}", classes="legend")
            yield Static(f"[b]Run states[/b]\n{_legend(RUN_GLYPHS)}", classes="legend")
            yield Static("[dim]esc closes[/dim]")
