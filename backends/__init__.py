"""The backend adapters: each gives the scheduler its clock, timers and concurrent work.

Import an adapter module by name (``coflow.backends.virtual``); each imports
its own library only when it is used.
"""
