"""FlowForge: a DAG workflow scheduler for shell-command tasks."""

__version__ = "0.1.0"
