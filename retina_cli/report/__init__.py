"""Self-contained HTML run reports (``report.html`` of ``retina train`` and ``retina eval``)."""
