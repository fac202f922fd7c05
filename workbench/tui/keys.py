"""Key bindings every pane lists first, so the footer shows them before the pane's own keys
and a narrow terminal (80x24) cuts off the pane's rarer keys, never help and quit."""

from textual.binding import Binding

ESSENTIAL = [
    Binding("question_mark", "app.help", "Help"),
    Binding("q", "app.quit", "Quit"),
]
