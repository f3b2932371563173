"""The run directory (DESIGN.md §3): its one owner.

  layout.py    every file's path in a run, the CSV headers, the outputs' axis orders
  location.py  where a run (or a data file) lives: a local path or a bucket URI; reading,
               atomic writing, listing, and the local mirror of a run kept in a bucket
  records.py   the scheduler's record of a generation (Decision, GenerationRecord)
  pbt_log.py   the PBT logs: their writer and their one tolerant reader
  outputs.py   output/lfads_output.{h5,mat}: MATLAB layout, HDF5 compression, writers, reader

This package sits below everything that reads or writes a run (data writers, training, PBT,
analysis, cloud) and imports none of them; nothing here imports Ray or torch. It is not called
`autolfads.run`: that name is the API function `autolfads.run`.
"""
