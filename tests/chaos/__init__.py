"""The chaos suite: real FlowForge processes under faults, checked against invariants I1-I7.

Run it with `python -m pytest -m chaos -s`; see README.md, "Reliability".
"""
