"""kerastl tune: the search space, the KerasTuner search, and what it leaves."""
