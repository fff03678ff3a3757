"""``onceflow verify``: prove exactly-once under real faults, with a report.

See :mod:`onceflow.verify.runner` for the protocol, :mod:`onceflow.verify.faults`
for the fault kinds and profiles.
"""

__all__: list[str] = []
