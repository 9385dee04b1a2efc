"""``kmmio export`` and ``kmmio plot``: a log as a Perfetto trace, a VCD, a Parquet table or
a picture.

* :mod:`~kmmio.tools.export.names`: what an access touched (registers with a map,
  addresses without) and the value each variable holds;
* :mod:`~kmmio.tools.export.source`: the log read through :func:`kmmio.tools.scan.scan`
  with a progress line, the output written beside itself and renamed into place;
* :mod:`~kmmio.tools.export.to_perfetto`, :mod:`~kmmio.tools.export.to_vcd`,
  :mod:`~kmmio.tools.export.to_parquet`, :mod:`~kmmio.tools.export.plot`: the formats
  (their libraries, the ``export`` and ``plot`` extras, imported only when used).

Everything streams: memory is bounded by a chunk of the log and a batch or row group,
plus one entry per distinct register, address and thread.
"""
