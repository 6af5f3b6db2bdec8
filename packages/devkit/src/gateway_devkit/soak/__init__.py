"""The soak's measurements: a long run of the whole gateway watched from outside.

`tests/test_soak.py` runs the simulator, ingest, the decoders, the publisher, a private Redis
and Mosquitto and a counting subscriber; this package measures them while frames flow:

- `samples`: every few seconds, the frames accepted and the records written (Redis's own
  counts of the entries ever added to each stream), the DDATA received, the streams' lengths,
  Redis's `used_memory`, and each process's resident memory (VmRSS) and CPU seconds (/proc);
- `tally`: every frame and record read back from the streams as they are written (before
  retention trims them): one record per frame, and the DDATA each device must receive;
- `subscriber`: `mosquitto_sub`, one line per DDATA (its topic), counted;
- `analysis`: what the samples say: RSS growth after the warm-up, CPU seconds per 1,000
  frames, the bound retention puts on Redis's memory;
- `report`: the samples as CSV, a summary as text and JSON;
- `plot`: the samples as a PNG (matplotlib, the dev kit's `plot` extra).
"""
