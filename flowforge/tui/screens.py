"""Modal screens: the confirmation asked before an action, the trigger form of a DAG with params,
why a task is in its state, and the key help."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Static

from flowforge.api.models import DagSummary, TaskExplanation
from flowforge.client import ApiError, ApiUnreachable
from flowforge.tui.states import RUN_GLYPHS, SLOW_MARK, TASK_GLYPHS
from flowforge.tui.text import label, visible


class ConfirmScreen(ModalScreen[dict[str, bool] | None]):
    """Asks yes or no; dismisses with the options chosen (e.g. {"downstream": True}), or None for no."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(
        self,
        title: str,
        question: str,
        confirm_label: str,
        options: dict[str, str] | None = None,
        *,
        danger: bool = True,
    ) -> None:
        super().__init__()
        self._title = title
        self._question = question
        self._confirm_label = confirm_label
        self._options = options or {}
        self._danger = danger

    def compose(self) -> ComposeResult:
        """A dialog box: the question, the options as checkboxes, yes and no buttons."""
        with Vertical(id="dialog") as box:
            box.border_title = self._title
            yield Static(Text(self._question), id="question")  # never read as markup
            for key, label in self._options.items():
                yield Checkbox(label, value=True, id=f"opt-{key}")
            with Horizontal(id="buttons"):
                yield Button(
                    f"{self._confirm_label} (y)", variant="error" if self._danger else "success", id="yes"
                )
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


def error_text(exc: ApiError | ApiUnreachable) -> Text:
    """An API's refusal (its message, then each detail) or its silence, as text to draw."""
    if isinstance(exc, ApiUnreachable):
        return Text(f"API unreachable: {visible(exc.reason)}", style="bold")
    text = Text(visible(exc.message), style="bold")
    for detail in exc.details[:20]:
        if isinstance(detail, dict):
            where = detail.get("param", detail.get("field", detail.get("loc")))
            what = detail.get("message", detail.get("msg", detail))
            line = f"{where}: {what}" if where is not None else str(what)
        else:
            line = str(detail)
        text.append("\n• " + visible(line), style="")
    return text


def param_value(default: Any, typed: str) -> Any:
    """A param's text as the form sends it: a number where the default is one and the text reads as one.

    Anything else goes as the text typed, and the API judges it.
    """
    if isinstance(default, int | float) and not isinstance(default, bool):
        for kind in (int, float):
            try:
                value = kind(typed.strip())
            except ValueError:
                continue
            if math.isfinite(value):
                return value
    return typed


def extra_params(typed: str) -> dict[str, str]:
    """`NAME=VALUE NAME=VALUE`; ValueError names a word without `=`."""
    out: dict[str, str] = {}
    for word in typed.split():
        name, eq, value = word.partition("=")
        if not eq or not name:
            raise ValueError(f"more params: expected NAME=VALUE, got {word!r}")
        out[name] = value
    return out


class TriggerScreen(ModalScreen[bool]):
    """The trigger form of a DAG with declared params, each prefilled with its default.

    `start(params)` triggers the run; the API's refusal is shown in the form, which stays open for
    a correction. Dismisses with True once the run is started, False when closed without one.
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close")]

    def __init__(self, dag: DagSummary, start: Callable[[dict[str, Any]], object]) -> None:
        super().__init__()
        self._dag = dag
        self._start = start
        self._names = list(dag.params)

    def compose(self) -> ComposeResult:
        """A row per declared param, a field for more, the error line, the buttons."""
        with Vertical(id="trigger") as box:
            box.border_title = label(f"Trigger {self._dag.id}")  # a Text: a string is read as markup
            with VerticalScroll(id="params"):
                for i, (name, default) in enumerate(self._dag.params.items()):
                    if isinstance(default, bool):
                        yield Checkbox(label(name), value=default, id=f"param-{i}")
                        continue
                    with Horizontal(classes="param"):
                        yield Static(label(name), classes="param-name")
                        value = "" if default is None else str(default)
                        yield Input(value=value, id=f"param-{i}", select_on_focus=False)
                with Horizontal(classes="param"):
                    yield Static("more params", classes="param-name")
                    yield Input(placeholder="NAME=VALUE …", id="extra")
            yield Static("", id="trigger-error")
            with Horizontal(id="buttons"):
                yield Button("Trigger (enter)", variant="success", id="go")
                yield Button("Close (esc)", variant="primary", id="close")

    def on_mount(self) -> None:
        """Start on the first param."""
        self.query_one("#params").query("Input, Checkbox").first().focus()

    def field(self, name: str) -> Input | Checkbox:
        """The field of a declared param."""
        widget = self.query_one(f"#param-{self._names.index(name)}")
        assert isinstance(widget, Input | Checkbox)
        return widget

    def params(self) -> dict[str, Any]:
        """The params to send; ValueError for a malformed `more params` field."""
        out: dict[str, Any] = {}
        for i, name in enumerate(self._names):
            default = self._dag.params[name]
            if isinstance(default, bool):
                out[name] = self.query_one(f"#param-{i}", Checkbox).value
            else:
                out[name] = param_value(default, self.query_one(f"#param-{i}", Input).value)
        return out | extra_params(self.query_one("#extra", Input).value)

    def show_error(self, text: Text | None) -> None:
        """The reason the last try failed (None: no error)."""
        box = self.query_one("#trigger-error", Static)
        box.update(text or "")
        box.set_class(text is not None, "-shown")

    @on(Input.Submitted)
    @on(Button.Pressed, "#go")
    def _go(self) -> None:
        try:
            params = self.params()
        except ValueError as exc:
            self.show_error(Text(visible(str(exc)), style="bold"))
            return
        self.query_one("#go", Button).disabled = True
        self._send(params)

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        """Leave without triggering."""
        self.dismiss(False)

    @work(exclusive=True, group="trigger")
    async def _send(self, params: dict[str, Any]) -> None:
        try:
            await asyncio.to_thread(self._start, params)
        except (ApiError, ApiUnreachable) as exc:
            self.show_error(error_text(exc))
            self.query_one("#go", Button).disabled = False
            return
        self.dismiss(True)


class ExplainScreen(ModalScreen[None]):
    """Why a task is in its state: the API's summary and each reason, read when the screen opens."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,e,q", "dismiss", "Close")]

    def __init__(self, run_id: str, task_id: str, read: Callable[[], TaskExplanation]) -> None:
        super().__init__()
        self._title = label(f"Why {task_id} · run {run_id[:8]}")
        self._read = read

    def compose(self) -> ComposeResult:
        """The explanation (loading… until it comes)."""
        with Vertical(id="explain") as box:
            box.border_title = self._title
            yield Static(Text("loading…"), id="why")
            yield Static("[dim]esc closes[/dim]")

    def on_mount(self) -> None:
        """Ask the API."""
        self._load()

    @work(exclusive=True, group="explain")
    async def _load(self) -> None:
        why = self.query_one("#why", Static)
        try:
            answer = await asyncio.to_thread(self._read)
        except (ApiError, ApiUnreachable) as exc:
            why.update(error_text(exc))
            return
        why.update(explanation_text(answer))


def explanation_text(answer: TaskExplanation) -> Text:
    """The summary, then one line per reason with its code."""
    text = Text(visible(answer.summary), style="bold")
    for reason in answer.reasons:
        text.append("\n• " + visible(reason.message))
        text.append(f"  ({visible(reason.code)})", style="dim")
    return text


HELP = """\
[b]Keys[/b]
  [b]t[/b]  trigger a run (a form when the DAG has params)
  [b]p[/b]  pause / unpause the DAG     [b]d[/b]  deactivate / activate (asks)
  [b]c[/b]  cancel the run (asks)       [b]R[/b]  retry failed tasks (asks)
  [b]r[/b]  retry the task (asks)       [b]e[/b]  why the task is in its state
  [b]l[/b]  log pane                    [b]/[/b]  filter DAGs (esc clears)
  [b]i[/b]  show / hide inactive DAGs   [b]?[/b]  this help
  [b]q[/b]  quit
  [b]arrows[/b] move, [b]enter[/b] opens a task's log, [b]tab[/b] next pane
  [b]shift+arrows[/b] pan the graph, [b]\\[ ][/b] older / newer attempt"""


MARKS_HELP = f"""\
[b]Durations[/b]
  {SLOW_MARK} before a task: it runs far longer than usual (its log pane says how much)
  ▁▃▅█ beside a DAG (wide screens): its last runs' durations, oldest left"""


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
            yield Static(MARKS_HELP, classes="legend")
            yield Static("[dim]esc closes[/dim]")
