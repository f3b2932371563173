"""Training one LFADS model: the epoch loop, checkpoints and posterior sample-and-average."""
