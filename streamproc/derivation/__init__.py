"""The derivation: raw records in, derived messages out, written once for the worker and
``streamproc replay`` alike (``step.py``; the instance join in ``join.py``)."""
