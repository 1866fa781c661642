"""The pure core: DAG model, DAG file parsing and validation, states, retry policy, planning.

Nothing here does I/O or imports a framework; every function takes what it needs (including `now`).
"""
