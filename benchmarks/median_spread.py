"""How the benchmarks print repeated measurements."""

import statistics


def spread(values: list, digits: int = 1) -> str:
    """The median, with [min-max] beside it when there was more than one run."""
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.{digits}f}"
    return f"{median:.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"
