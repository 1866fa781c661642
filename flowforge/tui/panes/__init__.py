"""The dashboard's panes: each one draws itself from a `Snapshot` and posts a message when the user picks something.

`status` (the top line), `dags` (the DAG list and its filter), `runs` (the selected DAG's runs),
`graph` (the focused run's live graph), `grid` (recent runs × tasks) and `log` (the focused task's
attempts and log). `flowforge.tui.app` composes them and keeps what the user looks at.
"""
