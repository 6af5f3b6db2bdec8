"""The gateway's development kit: what the tests, the bench and the demo share. Dev-only: it is
not installed in the image.

- `servers`: a private redis-server or Mosquitto on a free loopback port (start, stop, kill,
  restart on the same port), the binaries found once;
- `processes`: a supervisor of child processes, each logging to a file of its own;
- `mqtt_watch`: an MQTT v5 subscriber that records what arrives;
- `modem_line`: a pty pair playing the modem's serial line, paced at its rate if asked;
- `polling`: the one bounded wait on a condition;
- `scrape`: a service's /metrics and /healthz on loopback;
- `tcp_proxy`: a TCP proxy on loopback that can go silent, blackhole the connections it has or
  delay what it forwards (the silent-network and slow-broker tests);
- `fixtures`: all of it as pytest fixtures (a plugin named in the root conftest.py);
- `bench`, `demo`: `make bench` (gateway-bench) and `make demo` (gateway-demo);
- `soak`: the soak's measurements (tests/test_soak.py): samples, tally, CSV and plot.
"""
