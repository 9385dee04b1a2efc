"""Tools that read a trace: summary, diff, export (Perfetto, VCD, Parquet) and plot.

Everything here streams: a log of any length is read in chunks and processed in bounded
memory.  The heavy libraries are extras (``export``, ``plot``), imported only when used.
"""
