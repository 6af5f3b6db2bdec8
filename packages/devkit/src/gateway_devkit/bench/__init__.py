"""`make bench` (gateway-bench): what the gateway does on this machine, measured in one run.

Starts a private `redis-server` and a private `mosquitto` on free loopback ports, the real
services from this virtualenv (gateway-ingest on a pty that plays the modem's serial line,
one gateway-decoder, gateway-publisher), and a `mosquitto_sub` subscriber that stamps each
DDATA as it arrives. Then measures, in order:

1. decoder: the fast decoding path against the reference ALP library (d7a), in this process;
2. end to end: a burst of energy frames written into the pty as fast as it takes them, to the
   last DDATA received by the subscriber; every frame must arrive exactly once;
3. latency at the serial line rate: per frame, last byte written -> DDATA received, with the
   stages in between (ingest's receive stamp, the frame's and the record's stream entry ids);
4. resident memory of every service process;
5. backlog drain: frames added straight to `{p}:frames` while decoder and publisher are
   stopped, then the time for them to come out as DDATA.

Benchmarks report, they do not pass or fail: the exit code is 0 unless something could not be
started or a service died. Ctrl-C stops everything the bench started.

One module per measurement (`decoder`, `end_to_end`, `latency`, `memory`, `backlog`), what they
share in `harness` (the running gateway), `frames`, `streams`, `subscriber`, `cpu`, `profiles`
and `report`; `main` runs them in order. The floors measured beside the gateway are programs of
their own, run with `python -m`: `paho_floor`, `pty_reader_floor`, `ping_floor`.
"""
