"""The engine: the scheduler that plans, the worker that runs attempts, the leases that keep an
attempt on one worker at a time, and the executor that runs one command.
"""
