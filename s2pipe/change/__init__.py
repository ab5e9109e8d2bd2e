"""Change between two maps: from -> to codes, the transition matrix and its report."""
