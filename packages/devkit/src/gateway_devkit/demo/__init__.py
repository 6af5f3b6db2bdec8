"""`make demo` (gateway-demo): the whole gateway on a simulated modem, its MQTT output shown live.

No hardware needed. Uses the Redis on 127.0.0.1:6379 and the Mosquitto on 127.0.0.1:1883 when
they answer, otherwise starts private `redis-server` / `mosquitto` on free ports. Then starts
gateway-sim (TCP), gateway-ingest, gateway-decoder, gateway-publisher and the field console
(gateway-console, without a password, on 127.0.0.1:8080 or a free port: its address is printed)
from this virtualenv, subscribes to `mqtts/demo/#` and shows what the publisher sends until
Ctrl-C (or `--duration`). Once the first reading is in, it sends that device a DCMD (a new
interval), as SCorp-io would, and shows its command going through (`downlink`).
Everything it started is stopped at the end, and its Redis keys are deleted.

Exit code: 0, or 1 when something is missing, a service died, or a timed run saw no reading.

`infrastructure`: the servers and the gateway's processes; `console`: the field console;
`messages`: what the publisher sends,
as the demo reads it; `dashboard`: what is shown; `main`: the run.
"""
