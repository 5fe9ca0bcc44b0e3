"""Product recommendations from purchase history, computed set-based in SQL.

:mod:`.facts` reduces the paid orders' items before a moment to one row per customer and
product, :mod:`.associations` measures "bought X, later bought Y" (support, confidence,
lift), :mod:`.affinity` the categories each customer buys and what sells within each
channel, :mod:`.ranking` turns those into each customer's top N with the configured
exclusions, :mod:`.refresh` runs it all and replaces the live tables atomically (what
the scheduler runs at ``[recommendations] cron``), and :mod:`.evaluation` trains into
temporary tables as of a date and measures the recommendations against what customers
bought next. docs/recommendations.md explains the method.
"""
